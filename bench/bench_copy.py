"""The device's ceiling for memory-bound ops: a plain copy of the benchmark tensors.

GB/s counts the bytes read plus the bytes written; a fused memory-bound op is judged against it.
"""
import torch

from conftest import run_timed


def test_copy_bandwidth(benchmark, device):
    shape = (8, 64, 128, 128) if device.type == "cpu" else (16, 256, 64, 64)
    src = torch.randn(shape, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # touch the destination pages before timing
    run_timed(benchmark, lambda: dst.copy_(src), device, 2 * src.numel() * src.element_size(),
              rounds=10 if device.type == "cpu" else 100, shape=shape, impl="copy")
