"""How much of the step's speed-up a whole epoch keeps: trains the same run through the public API
(`Trainer.fit`) eager fp32 with the reference ops (the baseline of every speed claim) and with the
fast path given (default: compiled bf16), then splits each epoch as the loop logs it: steps, drawing
batches, evaluation, checkpoint.

    python bench/epoch_overhead.py --size M [--steps 30] --epochs 2 [--fast compile=on precision=bf16]

The first epoch of each run is left out (it holds the cold compile and the FLOP count). The step
speed-up is the ratio of the median step times (step_seconds / steps); the epoch speed-up that of
the mean epoch (steps + batches + evaluation + checkpoint). Setting: MIX-CT-MRI on the phantom the
experiment uses, at the size's image side, batch, widths and predictor.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from duiit_fast import Trainer  # noqa: E402
from duiit_fast.bench import SIZES, device_description  # noqa: E402
from duiit_fast.experiment import experiment_config  # noqa: E402


def run(cfg) -> dict:
    trainer = Trainer(cfg, progress=False)
    history = trainer.fit()[1:]   # after the first epoch: no cold compile, no FLOP count
    per_step = [r["step_seconds"] / r["steps"] for r in history]
    parts = {k: statistics.mean(r[k] for r in history)
             for k in ("step_seconds", "data_seconds", "eval_seconds", "checkpoint_seconds")}
    epoch = sum(parts.values())
    return {"fast_path": trainer.fast.describe(), "steps": history[0]["steps"], "step_s": statistics.median(per_step), "epoch_s": epoch,
            "parts_s": parts, "outside_step": 1 - parts["step_seconds"] / epoch, "mfu": history[-1].get("mfu")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="M", choices=sorted(SIZES))
    ap.add_argument("--steps", type=int, default=0, help="steps per epoch (0: one pass over the MRI slices, a real epoch)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--fast", nargs="*", default=["compile=on", "precision=bf16"], metavar="KEY=VALUE",
                    help="the [fast] table of the run compared with the eager fp32 reference")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    out = Path(tempfile.mkdtemp(prefix="duiit-epoch-"))
    base = dataclasses.replace(experiment_config(), **SIZES[args.size], epochs=args.epochs,
                               decay_start_epoch=args.epochs // 2, steps_per_epoch=args.steps or None,
                               translator_warmup_steps=0, reader_steps=50, num_threads=None)
    eager = dataclasses.replace(base, backend="reference", out_dir=str(out / "eager"),
                                fast=dataclasses.replace(base.fast, compile="off", precision="fp32"))
    fast = dataclasses.replace(base, out_dir=str(out / "fast")).with_settings([f"fast.{kv}" for kv in args.fast])
    results = {"eager fp32 reference": run(eager), "given": run(fast)}
    (e, f) = results.values()
    step_speedup, epoch_speedup = e["step_s"] / f["step_s"], e["epoch_s"] / f["epoch_s"]
    print(f"{device_description(torch.device('cpu'))}, torch {torch.__version__}, size {args.size}, "
          f"{e['steps']} steps per epoch{'' if args.steps else ' (one pass over the MRI slices)'} × "
          f"{args.epochs - 1} timed epoch(s)")
    for name, r in results.items():
        p = r["parts_s"]
        print(f"{name:22s} ({r['fast_path']}): step {r['step_s'] * 1e3:.0f} ms, epoch {r['epoch_s']:.1f} s = steps "
              f"{p['step_seconds']:.1f} + batches {p['data_seconds']:.2f} + evaluation {p['eval_seconds']:.2f} + "
              f"checkpoint {p['checkpoint_seconds']:.2f}; {100 * r['outside_step']:.1f} % outside the step"
              + (f", MFU {100 * r['mfu']:.1f} %" if r["mfu"] else ""))
    print(f"step {step_speedup:.2f}×, epoch {epoch_speedup:.2f}×: the epoch keeps "
          f"{100 * (epoch_speedup - 1) / (step_speedup - 1):.0f} % of the step's gain "
          f"({100 * epoch_speedup / step_speedup:.0f} % of its ratio)")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "step_speedup": step_speedup,
                                               "epoch_speedup": epoch_speedup}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
