"""Benchmark helpers: the device under test, its name, and timing (the fused backend of a device is
duiit_fast.ops.fused_backend, the resolver's)."""
import platform

import pytest
import torch


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    return f"{cpu} CPU, {torch.get_num_threads()} threads"




def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


DEVICES = [pytest.param("cpu", id="cpu"),
           pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
               not torch.cuda.is_available(), reason="CUDA is not available")])]


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


def run_timed(benchmark, fn, device, nbytes: int, rounds: int, **info):
    """Time fn (median of rounds) and record GB/s from the bytes it must move at least once."""
    def step():
        fn()
        synchronize(device)  # the timer must see the kernels finish
    benchmark.extra_info.update(device=device_name(device), **info)
    benchmark.pedantic(step, rounds=rounds, warmup_rounds=2, iterations=1)
    benchmark.extra_info["GB/s"] = round(nbytes / benchmark.stats.stats.median / 1e9, 2)
