"""Data-parallel scaling on paper: the bytes all-reduced per DUIIT step and a projected step time
on N GPUs, from a measured single-device step and link bandwidths.

    python bench/scaling.py --step-ms 127.6 --size paper [--nvlink-gbs 400 --internode-gbs 50]

The parameter counts come from the networks themselves (the Trainer builds them at the size's
config). The model of a step on N ranks (train/distributed.py):

- compute: the measured step time of B pairs on one device, scaled to the per-rank batch
  (linear: optimistic for small per-rank batches, where a GPU is less busy);
- communication: each optimiser's gradients are all-reduced as one flat fp32 buffer after the
  backward (not overlapped with it): G/F and P after the joint backward, the critics after theirs.
  A ring all-reduce moves 2(N−1)/N of the buffer through each rank's slowest link; latency
  2(N−1)·α per all-reduce. Links: the bus bandwidth NCCL reaches within a node (NVLink) and between
  nodes (one NIC per GPU). Defaults are typical published figures, not measured here: pass yours.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from duiit_fast.bench import SIZES  # noqa: E402
from duiit_fast.config import TrainConfig  # noqa: E402


def gradient_bytes(size: str, setting: str = "MIX-CT-MRI") -> dict:
    """fp32 gradient bytes per optimiser (parameters stay fp32 under bf16 autocast)."""
    from duiit_fast.train.trainer import Trainer
    cfg = TrainConfig(setting=setting, **SIZES[size], device="cpu", label_cues=False)
    trainer = Trainer(cfg, progress=False, check_paths=False)
    return {name: 4 * sum(p.numel() for g in opt.param_groups for p in g["params"])
            for name, opt in trainer.optimizers.items()}


def ring_allreduce_s(nbytes: int, ranks: int, bus_gbs: float, latency_us: float) -> float:
    if ranks == 1:
        return 0.0
    return 2 * (ranks - 1) / ranks * nbytes / (bus_gbs * 1e9) + 2 * (ranks - 1) * latency_us * 1e-6


def project(step_ms: float, batch: int, grads: dict, layouts, nvlink_gbs: float, internode_gbs: float,
            latency_us: float, global_batch: bool) -> list[dict]:
    rows = []
    for label, ranks, nodes in layouts:
        per_rank = batch / ranks if global_batch else batch
        compute = step_ms * 1e-3 * per_rank / batch
        bus = nvlink_gbs if nodes == 1 else internode_gbs   # a ring over nodes is as fast as its NIC hop
        comm = sum(ring_allreduce_s(b, ranks, bus, latency_us) for b in grads.values())
        step = compute + comm
        pairs = per_rank * ranks / step
        rows.append({"layout": label, "ranks": ranks, "per_rank_batch": per_rank, "compute_ms": compute * 1e3,
                     "allreduce_ms": comm * 1e3, "step_ms": step * 1e3, "pairs_per_s": pairs})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="paper", choices=sorted(SIZES))
    ap.add_argument("--step-ms", type=float, required=True, help="measured single-device step (ms) at the size's batch")
    ap.add_argument("--nvlink-gbs", type=float, default=400.0, help="all-reduce bus bandwidth within a node, GB/s")
    ap.add_argument("--internode-gbs", type=float, default=50.0, help="… between nodes per GPU (400 Gb/s NIC), GB/s")
    ap.add_argument("--latency-us", type=float, default=10.0, help="per ring hop, µs")
    args = ap.parse_args(argv)
    grads = gradient_bytes(args.size)
    batch = SIZES[args.size]["batch_size"]
    total = sum(grads.values())
    print(f"size {args.size}: fp32 gradients all-reduced per step: "
          + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in grads.items()) + f"; total {total / 1e6:.1f} MB")
    layouts = [("1 GPU", 1, 1), ("4 GPUs, 1 node", 4, 1), ("8 GPUs, 1 node", 8, 1), ("2 nodes × 8 GPUs", 16, 2)]
    for global_batch in (False, True):
        title = (f"global batch {batch} split over the ranks (the paper: 4 GPUs)" if global_batch
                 else f"{batch} pairs per rank (global batch grows with the ranks)")
        print(f"\n{title}\n| layout | per-rank pairs | compute ms | all-reduce ms | step ms | pairs/s |")
        print("|---|---|---|---|---|---|")
        for r in project(args.step_ms, batch, grads, layouts, args.nvlink_gbs, args.internode_gbs,
                         args.latency_us, global_batch):
            print(f"| {r['layout']} | {r['per_rank_batch']:g} | {r['compute_ms']:.1f} | {r['allreduce_ms']:.2f} | "
                  f"{r['step_ms']:.1f} | {r['pairs_per_s']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
