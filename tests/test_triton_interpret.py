"""Triton kernels on the CPU under TRITON_INTERPRET=1 (marker `interpret`, own process in CI).

The interpreter costs milliseconds per program: shapes stay small, but cover a plane larger than
one block, 1×1 planes, every fusion flag, fp32 and fp64 (gradcheck).
"""
import os

import pytest
import torch

from duiit_fast import ops
from duiit_fast.ops import reference

pytestmark = [
    pytest.mark.interpret,
    pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" or not ops.triton_available(),
                       reason="needs triton and TRITON_INTERPRET=1 set before the process starts"),
]
TOL = {torch.float32: dict(atol=3e-5, rtol=1e-4), torch.float64: dict(atol=1e-10, rtol=1e-9)}
CASES = [("relu", False), ("leaky_relu", False), ("none", False), ("none", True)]


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 2, 1, 1), (1, 1, 70, 70)])  # 4900 > one 4096 block
@pytest.mark.parametrize("act,residual", CASES)
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_instance_norm_matches_reference(shape, act, residual, affine, dtype):
    x = (torch.randn(shape, dtype=dtype) * 2 + 1).requires_grad_()
    w = torch.randn(shape[1], dtype=dtype, requires_grad=True) if affine else None
    b = torch.randn(shape[1], dtype=dtype, requires_grad=True) if affine else None
    r = torch.randn(shape, dtype=dtype, requires_grad=True) if residual else None
    y = ops.instance_norm_act(x, w, b, r, act=act, backend="triton")
    y_ref = reference.instance_norm_act(x, w, b, r, act=act)
    torch.testing.assert_close(y, y_ref, **TOL[dtype])
    leaves = [t for t in (x, w, b, r) if t is not None]
    g = torch.randn_like(y)
    for got, want in zip(torch.autograd.grad(y, leaves, g), torch.autograd.grad(y_ref, leaves, g)):
        torch.testing.assert_close(got, want, **TOL[dtype])


@pytest.mark.parametrize("act,residual", CASES)
def test_triton_instance_norm_gradcheck_fp64(act, residual):
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    args = (x, w, b) + ((torch.randn_like(x).requires_grad_(),) if residual else ())
    assert torch.autograd.gradcheck(lambda *a: ops.instance_norm_act(*a, act=act, backend="triton"), args)


def test_triton_constant_plane_is_finite_and_zero():
    x = torch.full((1, 2, 4, 4), 3.0, requires_grad=True)
    y = ops.instance_norm_act(x, act="none", backend="triton")
    assert torch.equal(y, torch.zeros_like(y))
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.fixture
def nhwc_rows(monkeypatch):
    """Set the NHWC kernels' chunk length (pixels per program): several chunks at interpreter sizes."""
    from duiit_fast.kernels import instance_norm_nhwc
    plan = instance_norm_nhwc.nhwc_plan

    def force(rows):
        monkeypatch.setattr(instance_norm_nhwc, "nhwc_plan", lambda n, c, length, _=None: plan(n, c, length, rows))
    return force


# (2, 3, 6, 5): one channel block, 3 of 64 lanes; (1, 70, 3, 2): two channel blocks, the second of 6
@pytest.mark.parametrize("shape,rows", [((2, 3, 6, 5), None), ((2, 3, 6, 5), 7), ((1, 70, 3, 2), 4)])
@pytest.mark.parametrize("act,residual", CASES)
def test_triton_channels_last_stays_channels_last_and_matches_reference(nhwc_rows, shape, rows, act, residual):
    nhwc_rows(rows)
    cl = torch.channels_last
    x = (torch.randn(shape) * 3 + 5).to(memory_format=cl).requires_grad_()
    w, b = torch.randn(shape[1], requires_grad=True), torch.randn(shape[1], requires_grad=True)
    r = torch.randn(shape).to(memory_format=cl).requires_grad_() if residual else None
    y = ops.instance_norm_act(x, w, b, r, act=act, backend="triton")
    assert y.is_contiguous(memory_format=cl) and not y.is_contiguous()   # no copy to NCHW and back
    y_ref = reference.instance_norm_act(x, w, b, r, act=act)
    torch.testing.assert_close(y, y_ref, **TOL[torch.float32])
    leaves = [t for t in (x, w, b, r) if t is not None]
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, leaves, g)
    assert grads[0].is_contiguous(memory_format=cl)
    for got, want in zip(grads, torch.autograd.grad(y_ref, leaves, g)):
        torch.testing.assert_close(got, want, **TOL[torch.float32])


def test_triton_channels_last_gradcheck_fp64(nhwc_rows):
    nhwc_rows(5)    # 3 chunks of a 12-pixel plane, the last of 2
    x = torch.randn(1, 3, 3, 4, dtype=torch.float64).to(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, s: ops.instance_norm_act(t, s, act="leaky_relu", backend="triton"),
                                    (x, w))


def test_triton_channels_last_statistics_are_stable_far_from_zero(nhwc_rows):
    # The chunk statistics are one pass over shifted data: a 1e4 offset must not eat the variance.
    nhwc_rows(48)
    x = 1e4 + torch.randn(1, 2, 16, 16, dtype=torch.float64)
    y = ops.instance_norm_act(x.float().to(memory_format=torch.channels_last), act="none", backend="triton")
    torch.testing.assert_close(y.double(), reference.instance_norm_act(x, act="none"), atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("n", [1, 37, 5000])  # 5000 spans two blocks
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_losses_match_reference(n, dtype):
    a = torch.randn(n, dtype=dtype)
    b = torch.randn(n, dtype=dtype)
    b[::4] = a[::4]  # ties
    a.requires_grad_(), b.requires_grad_()
    for target in (0.0, 1.0):
        out, ref = ops.lsgan_loss(a, target, backend="triton"), reference.lsgan_loss(a, target)
        torch.testing.assert_close(out, ref, **TOL[dtype])
        torch.testing.assert_close(torch.autograd.grad(out, a)[0], torch.autograd.grad(ref, a)[0], **TOL[dtype])
    out, ref = ops.l1_loss(a, b, backend="triton"), reference.l1_loss(a, b)
    torch.testing.assert_close(out, ref, **TOL[dtype])
    for got, want in zip(torch.autograd.grad(out, (a, b)), torch.autograd.grad(ref, (a, b))):
        torch.testing.assert_close(got, want, **TOL[dtype])


def test_triton_losses_gradcheck_fp64():
    p = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: ops.lsgan_loss(t, 0.0, backend="triton"), (p,))
    a = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    b = (a.detach() + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: ops.l1_loss(x, y, backend="triton"), (a, b))


def test_short_training_run_matches_reference(tiny_config):
    from duiit_fast import Trainer
    losses = {}
    for backend in ("reference", "triton"):
        cfg = tiny_config(backend=backend, epochs=1, steps_per_epoch=2, ngf=2, ndf=2,
                          out_dir=f"{tiny_config().out_dir}-{backend}")
        losses[backend] = Trainer(cfg, progress=False).fit()[0]
    for key in ("loss", "trans", "pred", "d_t", "d_s"):
        assert losses["triton"][key] == pytest.approx(losses["reference"][key], rel=1e-3, abs=1e-5)


@pytest.fixture
def tiny_split(monkeypatch):
    """Planes above 16 elements split into chunks of 32: the split path at interpreter sizes."""
    from duiit_fast.kernels import instance_norm
    monkeypatch.setattr(instance_norm, "SPLIT_MIN", 16)
    monkeypatch.setattr(instance_norm, "CHUNK", 32)
    return instance_norm


# 4 chunks (the last of 3 elements), 2 exact chunks, 8 chunks (the interpreter costs ~35 s for 154)
@pytest.mark.parametrize("shape", [(2, 3, 9, 11), (1, 2, 8, 8), (1, 1, 12, 20)])
@pytest.mark.parametrize("act,residual", CASES)
@pytest.mark.parametrize("affine", [False, True])
def test_triton_split_planes_match_reference(tiny_split, shape, act, residual, affine):
    length = shape[2] * shape[3]
    assert tiny_split.plane_split(length)[1] == -(-length // 32)
    x = (torch.randn(shape) * 3 + 5).requires_grad_()        # an offset mean: the merge must be stable
    w = torch.randn(shape[1], requires_grad=True) if affine else None
    b = torch.randn(shape[1], requires_grad=True) if affine else None
    r = torch.randn(shape, requires_grad=True) if residual else None
    y = ops.instance_norm_act(x, w, b, r, act=act, backend="triton")
    y_ref = reference.instance_norm_act(x, w, b, r, act=act)
    torch.testing.assert_close(y, y_ref, **TOL[torch.float32])
    leaves = [t for t in (x, w, b, r) if t is not None]
    g = torch.randn_like(y)
    for got, want in zip(torch.autograd.grad(y, leaves, g), torch.autograd.grad(y_ref, leaves, g)):
        torch.testing.assert_close(got, want, **TOL[torch.float32])


def test_triton_split_planes_gradcheck_fp64(tiny_split):
    x = torch.randn(1, 2, 7, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, s: ops.instance_norm_act(t, s, act="leaky_relu", backend="triton"),
                                    (x, w))


def test_triton_split_statistics_are_stable_far_from_zero(tiny_split):
    # A large common offset with small spread: naive E[x²] − E[x]² merging would lose the variance.
    x = 1e4 + torch.randn(1, 1, 16, 16, dtype=torch.float64)
    y = ops.instance_norm_act(x.float(), act="none", backend="triton")
    torch.testing.assert_close(y.double(), reference.instance_norm_act(x, act="none"), atol=2e-3, rtol=1e-3)


def test_loss_backward_writes_no_gradient_for_a_data_target():
    from duiit_fast.ops import losses
    a, b = torch.randn(50), torch.randn(50)
    g = torch.tensor(1.0)
    loss_backward = losses.triton_ops()[1]
    grad_a, grad_b = loss_backward(g, a, b, 0.0, "l1", False)
    assert grad_b.numel() == 0
    grad_a2, grad_b2 = loss_backward(g, a, b, 0.0, "l1", True)
    torch.testing.assert_close(grad_a, grad_a2)
    torch.testing.assert_close(grad_b2, -grad_a2)
