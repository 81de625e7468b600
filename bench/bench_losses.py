"""lsgan_loss and l1_loss: fused vs eager reference vs torch.compile(reference).

Bytes: lsgan forward reads pred (1 tensor), backward reads pred and writes its gradient (2);
l1 forward reads a and b (2), backward reads both and writes both gradients (4).
"""
import pytest
import torch

from duiit_fast import ops
from duiit_fast.ops import reference

from conftest import run_timed
from duiit_fast.ops import fused_backend

# Backward-only timings reuse one graph (retain_graph=True), which compiled graphs with donated
# buffers refuse; set before anything is compiled, since dynamo caches per code object.
torch._functorch.config.donated_buffer = False

N = {"cpu": 8 * 1 * 256 * 256 * 4, "cuda": 16 * 1 * 256 * 256 * 16}


def _function(loss, impl, device):
    if impl == "fused":
        backend = fused_backend(device)
        fused = {"lsgan": lambda a, b: ops.lsgan_loss(a, 1.0, backend=backend),
                 "l1": lambda a, b: ops.l1_loss(a, b, backend=backend)}
        return fused[loss]
    ref = {"lsgan": lambda a, b: reference.lsgan_loss(a, 1.0), "l1": lambda a, b: reference.l1_loss(a, b)}[loss]
    if impl == "reference":
        return ref
    return torch.compile(ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("direction", ["forward", "backward", "both"])
@pytest.mark.parametrize("impl", ["reference", "fused", "compiled_reference"])
@pytest.mark.parametrize("loss", ["lsgan", "l1"])
def test_loss(benchmark, device, loss, impl, direction, dtype):
    if dtype == torch.bfloat16 and device.type == "cpu":
        pytest.skip("bf16 is a CUDA target")
    n = N[device.type]
    a = torch.randn(n, device=device, dtype=dtype, requires_grad=True)
    b = torch.randn(n, device=device, dtype=dtype, requires_grad=True)
    fn = _function(loss, impl, device)
    ref_fn = _function(loss, "reference", device)
    tol = dict(atol=3e-2, rtol=3e-2) if dtype == torch.bfloat16 else dict(atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fn(a, b), ref_fn(a, b), **tol)
    inputs = (a,) if loss == "lsgan" else (a, b)
    per_dir = {"lsgan": (1, 2), "l1": (2, 4)}[loss]
    if direction == "forward":
        def work():
            with torch.no_grad():
                fn(a, b)
        tensors = per_dir[0]
    elif direction == "backward":
        out = fn(a, b)

        def work():
            torch.autograd.grad(out, inputs, retain_graph=True)
        tensors = per_dir[1]
    else:
        def work():
            torch.autograd.grad(fn(a, b), inputs)
        tensors = sum(per_dir)
    run_timed(benchmark, work, device, tensors * n * a.element_size(),
              rounds=10 if device.type == "cpu" else 50, n=n, impl=impl, direction=direction, dtype=str(dtype))
