"""CUDA: the Triton backend (triton_op) against the reference, fp32 and bf16, and under
torch.compile. Marker `gpu`; skipped with a reason where CUDA is absent."""
import pytest
import torch

from duiit_fast import ops, reference

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")]


def _tol(dtype):
    return dict(atol=3e-2, rtol=3e-2) if dtype == torch.bfloat16 else dict(atol=1e-4, rtol=1e-4)


def _err(out, ref64):
    return (out.double() - ref64).abs().max().item()


@pytest.mark.parametrize("shape", [(16, 256, 64, 64), (2, 3, 63, 21), (4, 8, 1, 1), (1, 4, 300, 300)])
@pytest.mark.parametrize("act,residual", [("relu", False), ("leaky_relu", False), ("none", True)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_instance_norm_matches_reference(shape, act, residual, dtype):
    x = torch.randn(shape, device="cuda", dtype=dtype, requires_grad=True)
    w = torch.randn(shape[1], device="cuda", dtype=dtype, requires_grad=True)
    r = torch.randn(shape, device="cuda", dtype=dtype, requires_grad=True) if residual else None
    y = ops.instance_norm_act(x, w, None, r, act=act, backend="triton")
    y_ref = reference.instance_norm_act(x, w, None, r, act=act)
    # fused error within twice the same-dtype eager error (vs an fp64 oracle), plus a floor
    y64 = reference.instance_norm_act(x.double(), w.double(), None, None if r is None else r.double(), act=act)
    assert _err(y, y64) <= 2 * _err(y_ref, y64) + _tol(dtype)["atol"]
    g = torch.randn_like(y)
    leaves = [t for t in (x, w, r) if t is not None]
    for got, want in zip(torch.autograd.grad(y, leaves, g), torch.autograd.grad(y_ref, leaves, g)):
        torch.testing.assert_close(got.float(), want.float(), **_tol(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_losses_match_reference(dtype):
    a = torch.randn(1 << 20, device="cuda", dtype=dtype, requires_grad=True)
    b = torch.randn(1 << 20, device="cuda", dtype=dtype, requires_grad=True)
    for out, ref in ((ops.lsgan_loss(a, 1.0, backend="triton"), reference.lsgan_loss(a, 1.0)),
                     (ops.l1_loss(a, b, backend="triton"), reference.l1_loss(a, b))):
        torch.testing.assert_close(out.float(), ref.float(), **_tol(dtype))
        torch.testing.assert_close(torch.autograd.grad(out, a)[0].float(), torch.autograd.grad(ref, a)[0].float(),
                                   **_tol(dtype))


def test_cuda_triton_op_compiles_with_inductor():
    x = torch.randn(4, 16, 32, 32, device="cuda", requires_grad=True)
    fn = torch.compile(lambda t: ops.lsgan_loss(ops.instance_norm_act(t, act="relu", backend="triton"), 1.0,
                                                backend="triton"), fullgraph=True)
    out = fn(x)
    out.backward()
    x2 = x.detach().clone().requires_grad_()
    ref = reference.lsgan_loss(reference.instance_norm_act(x2), 1.0)
    ref.backward()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-5, rtol=1e-4)


def test_cuda_opcheck():
    from duiit_fast import _triton_ops
    x = torch.randn(2, 3, 8, 8, device="cuda", requires_grad=True)
    torch.library.opcheck(_triton_ops.instance_norm_act_cuda, (x, None, None, None, "relu", 0.2, 1e-5))
    torch.library.opcheck(_triton_ops.loss_cuda, (x, None, 1.0, "lsgan"))
