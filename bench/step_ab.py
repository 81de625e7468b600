"""Interleaved timing of joint-step variants with `duiit bench`'s harness, for a GPU check script:
build (and compile) every variant, optionally wait, then time them round by round.

    python bench/step_ab.py --size paper --device cuda --variants eager-reference-fp32 \
        eager-fused-bf16 compiled-reference-bf16 compiled-fused-bf16

(The A/B of the NHWC instance-norm kernels against copies to NCHW, 1.80× vs 1.63×, runs at d742cfb.)

The first variant is the baseline of every speed-up (median of per-round ratios). `--wait-for FILE`
builds (and compiles) every variant, then waits for FILE before timing: compile beside other work,
time alone.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from duiit_fast import bench


def _build(size, spec, device):
    h = bench.StepHarness(size, bench.variant_by_name(spec), device)
    start = time.perf_counter()
    h.step()
    bench.synchronize(device)
    first = time.perf_counter() - start
    for _ in range(2):
        h.step()
    return h, first


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="paper", choices=sorted(bench.SIZES))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--variants", nargs="+", required=True)
    ap.add_argument("--wait-for", help="build everything, then wait for this file before timing")
    ap.add_argument("--wait-max", type=float, default=300.0)
    ap.add_argument("--build-budget", type=float, default=None,
                    help="seconds: a variant whose build would start later is skipped (a compile cannot be cut)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="duiit-step-ab-"))
    device = torch.device(args.device)
    built, failed = {}, {}
    started = time.time()
    for spec in args.variants:
        if args.build_budget is not None and time.time() - started > args.build_budget:
            failed[spec] = f"skipped: build budget of {args.build_budget:.0f} s spent"
            continue
        print(f"building {args.size} / {spec} ...", flush=True)
        try:
            built[spec] = _build(args.size, spec, device)
        except Exception as e:   # one broken variant (a kernel that fails to build, OOM) must not cost the rest
            failed[spec] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            print(f"  FAILED {failed[spec]}", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        print(f"  first step {built[spec][1]:.1f} s", flush=True)
    if args.variants[0] not in built:
        print(f"the baseline {args.variants[0]} did not build: nothing to compare against")
        return 1
    if args.wait_for:
        deadline = time.time() + args.wait_max
        while not Path(args.wait_for).exists() and time.time() < deadline:
            time.sleep(1)
    times = {spec: [] for spec in built}
    for _ in range(args.rounds):
        for spec, (h, _) in built.items():
            bench.synchronize(device)
            start = time.perf_counter()
            h.step()
            bench.synchronize(device)
            times[spec].append(time.perf_counter() - start)
    base = args.variants[0]
    pairs = bench.SIZES[args.size]["batch_size"]
    rows = []
    print(f"{bench.device_description(device)}, torch {torch.__version__}, size {args.size}, "
          f"{args.rounds} interleaved rounds; speed-up = median per-round ratio vs {base}")
    print(f"{'variant':36s} {'step ms':>9s} {'pairs/s':>8s} {'speed-up':>9s} {'first step s':>13s}")
    for spec, ts in times.items():
        med = statistics.median(ts)
        ratio = statistics.median(b / t for b, t in zip(times[base], ts))
        rows.append(dict(variant=spec, step_s=med, pairs_per_s=pairs / med, speedup=ratio,
                         first_step_s=built[spec][1], times_s=ts))
        print(f"{spec:36s} {med * 1e3:9.1f} {pairs / med:8.1f} {ratio:8.2f}x {built[spec][1]:13.1f}")
    for spec, error in failed.items():
        print(f"{spec:36s} FAILED {error}")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(size=args.size, device=bench.device_description(device),
                                                   torch=torch.__version__, rows=rows, failed=failed), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
