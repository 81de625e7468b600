"""instance_norm_act forward+backward: C++ vs the eager reference vs torch.compile(reference).

Run: make bench (CPU). Each benchmark checks its output against the reference before timing.
Bytes per fwd+bwd (fp32, no affine): forward reads x, writes y (+ mean/rstd); backward reads
dy and x, writes dx — 5 tensors of N·C·H·W·4 bytes in all.
"""
import platform

import pytest
import torch

from duiit_fast import ops, reference

SHAPE = (8, 64, 128, 128)


def _device_name():
    return f"{platform.machine()} CPU, {torch.get_num_threads()} threads"


def _fwd_bwd(fn):
    x = torch.randn(SHAPE, requires_grad=True)
    dy = torch.randn(SHAPE)

    def run():
        x.grad = None
        fn(x).backward(dy)
        return x.grad
    return x, dy, run


IMPLS = {
    "reference": lambda x: reference.instance_norm_act(x, act="relu"),
    "cpp": lambda x: ops.instance_norm_act(x, act="relu", backend="cpp"),
}


@pytest.mark.parametrize("impl", ["reference", "cpp", "compiled_reference"])
def test_instance_norm_act_fwd_bwd(benchmark, impl):
    fn = IMPLS.get(impl) or torch.compile(IMPLS["reference"])
    x, dy, run = _fwd_bwd(fn)
    expected_grad = torch.autograd.grad(IMPLS["reference"](x), x, dy)[0]
    torch.testing.assert_close(run(), expected_grad, atol=1e-4, rtol=1e-3)
    benchmark.extra_info["device"] = _device_name()
    benchmark.extra_info["shape"] = SHAPE
    benchmark.pedantic(run, rounds=8, warmup_rounds=2)
    nbytes = 5 * x.numel() * x.element_size()
    benchmark.extra_info["GB/s"] = nbytes / benchmark.stats.stats.median / 1e9
