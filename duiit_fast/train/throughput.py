"""How much of the device a step uses: its FLOPs (torch's FLOP counter: convolutions and matmuls,
what bounds the step) and the device's measured matmul ceiling, whose ratio over a run's step time
is the MFU the loop logs."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import time

import torch


class FlopCount:
    """`with FlopCount() as c: ...` counts the FLOPs of the forward and backward passes inside (c.total;
    None when not enabled). Observation only: every op runs as it would without it, so the numbers of a
    run do not change; a compiled function is not recompiled (torch 2.14.1)."""

    def __init__(self, enabled: bool = True):
        self.enabled, self.total, self._mode = enabled, None, None

    def __enter__(self) -> "FlopCount":
        if self.enabled:
            from torch.utils.flop_counter import FlopCounterMode
            self._mode = FlopCounterMode(display=False)
            self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._mode is not None:
            self._mode.__exit__(*exc)
            self.total = int(self._mode.get_total_flops())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@functools.lru_cache(maxsize=None)
def matmul_ceiling(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> float:
    """The device's measured matmul throughput (FLOP/s) for dtype: the practical ceiling MFU is taken
    against (vendor peaks are not reachable on a shared 2-core VM). The matrix grows until one product
    takes ≥ 50 ms or reaches 1024² (CPU) / 8192² (CUDA). Measured once per process; draws from its own
    generator, never the run's."""
    largest = 8192 if device.type == "cuda" else 1024
    generator = torch.Generator(device=device).manual_seed(0)

    def best_time(n):
        a = torch.rand(n, n, device=device, dtype=dtype, generator=generator)
        b = torch.rand(n, n, device=device, dtype=dtype, generator=generator)
        torch.mm(a, b)
        synchronize(device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            synchronize(device)
            times.append(time.perf_counter() - start)
        return min(times)
    # On CUDA the step's fp32 convolutions run on TF32 units (cuDNN's default, allow_tf32): the fp32
    # ceiling is measured in the same math mode, else the fp32 MFU exceeds 100 % (seen on an H200).
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32
    try:
        n = 256
        t = best_time(n)
        while t < 0.05 and n < largest:
            n *= 2
            t = best_time(n)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    return 2 * n ** 3 / t


@contextlib.contextmanager
def counted_step(t, enabled: bool):
    """Count the FLOPs of the trainer `t`'s step inside (the yielded FlopCount's total). A compiled
    function cannot run under the counter (torch.compile refuses a frame with a dispatch mode, and a
    fullgraph function then fails), so a compiled run counts that one step through the eager twin of
    its step functions: the same precision, backend and weights, rounded as eager rounds."""
    counter = FlopCount(enabled)
    if not enabled:
        yield counter
        return
    compiled = t.step_functions
    if t.fast.compile:
        from .step_functions import build_step_functions
        eager = dataclasses.replace(t.fast, compile=False, regions=False)
        t.step_functions = build_step_functions(t.nets, t.cfg, eager, t.device, t.age_std, t.method.feedback_reader(t),
                                                t.world.size, t.method.extra_weight(t.cfg))
    try:
        with counter:
            yield counter
    finally:
        t.step_functions = compiled
