"""Cold compile, step time and correctness of the compiled joint step (reference ops) with and
without nested compile regions (torch.compiler.nested_compile_region: a marked, repeated region is
compiled once and called at every use). Each call is one process with an empty Inductor cache, so
the first step pays the whole cold compile; the step time is the median of the steps after it. The
first step's losses are compared with the eager step of the same weights and batch (same
precision): the oracle.

    python bench/compile_regions.py M bf16 none        # every block unrolled (as CUDA compiles)
    python bench/compile_regions.py M bf16 blocks      # each residual block one region (a CPU run)
    CPP_WRAPPER=1 python bench/compile_regions.py M fp32 none   # Inductor's cpp_wrapper mode

"blocks" runs with the Inductor options a compiled CPU run uses (train/step_functions.py,
REGION_COMPILE_OPTIONS: no buffer reuse); REGION_OPTIONS=none runs it without them (the wrong
values of docs/torch-nested-region-bug.md), REGION_OPTIONS=layout with NCHW convolutions instead.
"""
import os
import sys
import tempfile
import time
from pathlib import Path

CACHE = tempfile.mkdtemp(prefix="duiit-cold-")
os.environ["TORCHINDUCTOR_CACHE_DIR"] = CACHE   # before torch is imported: a cold compile

import torch

MODES = ("none", "blocks")


def region_options() -> tuple:
    from duiit_fast.train.step_functions import REGION_COMPILE_OPTIONS
    choice = os.environ.get("REGION_OPTIONS", "buffer_reuse")
    return {"buffer_reuse": REGION_COMPILE_OPTIONS, "none": (), "layout": (("layout_optimization", False),)}[choice]


def describe(mode: str) -> str:
    return f"regions: {mode}" + (f", Inductor options {dict(region_options())}" if mode == "blocks" else "")


def main(size: str, precision: str, mode: str, rounds: int = 5) -> None:
    if mode not in MODES or precision not in ("fp32", "bf16"):
        sys.exit(__doc__)
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    if os.environ.get("CPP_WRAPPER") == "1":   # Inductor's C++ wrapper: kernels and wrapper in one .so per graph
        import torch._inductor.config as inductor_config
        inductor_config.cpp_wrapper = True
    from duiit_fast.bench import StepHarness, variant_by_name
    from torch._dynamo.utils import compile_times
    eager_losses = StepHarness(size, variant_by_name(f"eager-reference-{precision}"), torch.device("cpu")).step()
    described = describe(mode)
    harness = StepHarness(size, variant_by_name(f"compiled-reference-{precision}"), torch.device("cpu"),
                          regions=mode == "blocks", region_options=region_options())
    start = time.perf_counter()
    losses = harness.step()
    first = time.perf_counter() - start
    steps = []
    for _ in range(rounds + 1):   # the first of these is dropped: a second call can still warm caches
        start = time.perf_counter()
        harness.step()
        steps.append(time.perf_counter() - start)
    median = sorted(steps[1:])[rounds // 2]
    kernels = len(list(Path(CACHE).rglob("*.so")))
    worst = max(abs(losses[k] - eager_losses[k]) / abs(eager_losses[k]) for k in losses)
    print(f"size {size}, {precision}, {described}: first step {first:.1f} s, cold compile ≈ "
          f"{first - median:.1f} s, median step {median * 1e3:.0f} ms, {kernels} C++ kernels; "
          f"first-step losses vs eager: largest relative difference {worst:.1e}")
    names, seconds = compile_times(repr="csv", aggregate=True)
    for phase, s in sorted(zip(names, seconds), key=lambda kv: -float(kv[1]))[:12]:
        print(f"  {phase:60s} {float(s):8.1f} s")


if __name__ == "__main__":
    main(*sys.argv[1:4])
