"""lsgan_loss and l1_loss: C++ against the reference, forward and gradients."""
import pytest
import torch

from duiit_fast import ops
from duiit_fast.ops import reference

pytestmark = pytest.mark.skipif(not ops.cpp_available(), reason="duiit_fast._C is not built")
TOL = {torch.float32: dict(atol=1e-6, rtol=1e-5), torch.float64: dict(atol=1e-12, rtol=1e-10)}
SHAPES = [(1,), (3, 1, 30, 30), (5, 7), (70_001,)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("target", [0.0, 1.0])
def test_lsgan_cpp_matches_reference(shape, dtype, target):
    p = torch.randn(shape, dtype=dtype, requires_grad=True)
    ref = reference.lsgan_loss(p, target)
    out = ops.lsgan_loss(p, target, backend="cpp")
    torch.testing.assert_close(out, ref, **TOL[dtype])
    g = torch.tensor(0.7, dtype=dtype)
    torch.testing.assert_close(torch.autograd.grad(out, p, g)[0], torch.autograd.grad(ref, p, g)[0], **TOL[dtype])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_l1_cpp_matches_reference_including_ties(shape, dtype):
    a = torch.randn(shape, dtype=dtype)
    b = torch.randn(shape, dtype=dtype)
    b.view(-1)[::3] = a.view(-1)[::3]  # exact ties: sign(0) = 0
    a.requires_grad_(), b.requires_grad_()
    ref = reference.l1_loss(a, b)
    out = ops.l1_loss(a, b, backend="cpp")
    torch.testing.assert_close(out, ref, **TOL[dtype])
    ga, gb = torch.autograd.grad(out, (a, b))
    ra, rb = torch.autograd.grad(ref, (a, b))
    torch.testing.assert_close(ga, ra, **TOL[dtype])
    torch.testing.assert_close(gb, rb, **TOL[dtype])


def test_gradcheck_fp64_cpp_losses():
    p = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: ops.lsgan_loss(t, 1.0, backend="cpp"), (p,))
    a = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    b = (a.detach() + 0.5 * torch.sign(torch.randn(4, 5, dtype=torch.float64))).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: ops.l1_loss(x, y, backend="cpp"), (a, b))


def test_non_contiguous_and_half_inputs():
    a = torch.randn(6, 8).t()
    b = torch.randn(8, 6)
    torch.testing.assert_close(ops.l1_loss(a, b, backend="cpp"), reference.l1_loss(a, b))
    h = torch.randn(4, 4).bfloat16()
    out = ops.lsgan_loss(h, 1.0, backend="cpp")
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference.lsgan_loss(h.float(), 1.0), atol=1e-2, rtol=1e-2)


def test_opcheck_and_compile_cpp_losses():
    a = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    from duiit_fast.ops.losses import loss_cpp
    torch.library.opcheck(loss_cpp, (a, b, 0.0, "l1"))
    torch.library.opcheck(loss_cpp, (a, None, 1.0, "lsgan"))
    fn = torch.compile(lambda x, y: ops.l1_loss(x, y, backend="cpp") + ops.lsgan_loss(x, 1.0, backend="cpp"),
                       fullgraph=True, backend="aot_eager")
    out = fn(a, b)
    out.backward()
    ref_a = a.detach().clone().requires_grad_()
    (reference.l1_loss(ref_a, b.detach()) + reference.lsgan_loss(ref_a, 1.0)).backward()
    torch.testing.assert_close(a.grad, ref_a.grad)


def test_loss_argument_errors():
    with pytest.raises(ValueError, match="equal shapes"):
        ops.l1_loss(torch.zeros(2), torch.zeros(3), backend="cpp")
    with pytest.raises(ValueError, match="empty tensor"):
        ops.lsgan_loss(torch.zeros(0), 1.0, backend="cpp")


def test_cpp_loss_backward_writes_no_gradient_for_a_data_target():
    from duiit_fast.ops.losses import loss_cpp_backward
    a, b = torch.randn(50), torch.randn(50)
    g = torch.tensor(1.0)
    grad_a, grad_b = loss_cpp_backward(g, a, b, 0.0, "l1", False)
    assert grad_b.numel() == 0
    grad_a2, grad_b2 = loss_cpp_backward(g, a, b, 0.0, "l1", True)
    torch.testing.assert_close(grad_a, grad_a2)
    torch.testing.assert_close(grad_b2, -grad_a2)
    # Through autograd: a target without requires_grad gets none, one with it gets −grad_a.
    x = torch.randn(50, requires_grad=True)
    y = torch.randn(50, requires_grad=True)
    gx, gy = torch.autograd.grad(ops.l1_loss(x, y, backend="cpp"), (x, y))
    torch.testing.assert_close(gy, -gx)


def test_auto_losses_on_cuda_take_the_reference_and_an_explicit_backend_is_kept():
    """Measured on an H200: the Triton losses lose to the eager reference (bench/RESULTS.md)."""
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert ops.resolve("loss", "auto", cuda) == "reference"
    assert ops.resolve("loss", "reference", cuda) == "reference"
    if ops.triton_available():
        assert ops.resolve("loss", "triton", cuda) == "triton"
        assert ops.resolve("instance_norm", "auto", cuda) == "triton"
    assert ops.resolve("loss", "auto", cpu) == ("cpp" if ops.cpp_available() else "reference")
