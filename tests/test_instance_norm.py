"""C++ instance_norm_act against the eager reference: forward and every gradient."""
import pytest
import torch

from duiit_fast import ops
from duiit_fast.ops import instance_norm as instance_norm_op, reference

pytestmark = pytest.mark.skipif(not ops.cpp_available(), reason="duiit_fast._C is not built")

SHAPES = [(2, 3, 7, 5), (1, 1, 1, 1), (3, 4, 63, 21), (1, 2, 130, 70)]
CASES = [("relu", False), ("leaky_relu", False), ("none", False), ("none", True)]
TOL = {torch.float32: dict(atol=2e-5, rtol=1e-4), torch.float64: dict(atol=1e-10, rtol=1e-9)}


def _inputs(shape, dtype, affine, residual):
    x = torch.randn(shape, dtype=dtype) * 3 + 1.5
    c = shape[1]
    w = (torch.randn(c, dtype=dtype) if affine else None)
    b = (torch.randn(c, dtype=dtype) if affine else None)
    r = torch.randn(shape, dtype=dtype) if residual else None
    return [t.requires_grad_() if t is not None else None for t in (x, w, b, r)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("act,residual", CASES)
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpp_matches_reference_forward_and_backward(shape, act, residual, affine, dtype):
    x, w, b, r = _inputs(shape, dtype, affine, residual)
    y_ref = reference.instance_norm_act(x, w, b, r, act=act, slope=0.2)
    y_cpp = ops.instance_norm_act(x, w, b, r, act=act, slope=0.2, backend="cpp")
    torch.testing.assert_close(y_cpp, y_ref, **TOL[dtype])
    grad = torch.randn_like(y_ref)
    leaves = [t for t in (x, w, b, r) if t is not None]
    g_ref = torch.autograd.grad(y_ref, leaves, grad)
    g_cpp = torch.autograd.grad(y_cpp, leaves, grad)
    for a, e in zip(g_cpp, g_ref):
        torch.testing.assert_close(a, e, **TOL[dtype])


@pytest.mark.parametrize("act,residual", CASES)
def test_cpp_gradcheck_fp64(act, residual):
    x, w, b, r = _inputs((2, 3, 5, 4), torch.float64, True, residual)
    args = [t for t in (x, w, b, r) if t is not None]

    def f(*a):
        return ops.instance_norm_act(*a, act=act, backend="cpp")
    assert torch.autograd.gradcheck(f, tuple(args))


def test_cpp_matches_torch_instance_norm_module():
    x = torch.randn(4, 8, 33, 17)
    expected = torch.relu(torch.nn.InstanceNorm2d(8)(x))
    torch.testing.assert_close(ops.instance_norm_act(x, backend="cpp"), expected, atol=2e-5, rtol=1e-4)


def test_channels_last_and_non_contiguous_inputs():
    x = torch.randn(2, 6, 9, 11)
    expected = reference.instance_norm_act(x, act="leaky_relu")
    cl = x.to(memory_format=torch.channels_last)
    torch.testing.assert_close(ops.instance_norm_act(cl, act="leaky_relu", backend="cpp"), expected)
    strided = torch.randn(2, 6, 11, 9).transpose(2, 3)
    torch.testing.assert_close(ops.instance_norm_act(strided, backend="cpp"),
                               reference.instance_norm_act(strided))


def test_bf16_on_cpu_computes_in_fp32():
    x = torch.randn(2, 3, 8, 8)
    y = ops.instance_norm_act(x.bfloat16(), backend="cpp")
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), reference.instance_norm_act(x), atol=2e-2, rtol=2e-2)


def test_constant_plane_is_finite():
    x = torch.full((1, 2, 4, 4), 3.0, requires_grad=True)
    y = ops.instance_norm_act(x, act="none", backend="cpp")
    assert torch.equal(y, torch.zeros_like(y))
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_opcheck_cpp_op():
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(instance_norm_op.instance_norm_act_cpp, (x, w, b, None, "leaky_relu", 0.2, 1e-5))
    torch.library.opcheck(instance_norm_op.instance_norm_act_cpp, (x, None, None, torch.randn_like(x), "none", 0.2, 1e-5))


def test_compiles_fullgraph():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    fn = torch.compile(lambda t: ops.instance_norm_act(t, act="relu", backend="cpp").square().sum(),
                       fullgraph=True, backend="aot_eager")
    out = fn(x)
    out.backward()
    x2 = x.detach().clone().requires_grad_()
    ref = reference.instance_norm_act(x2).square().sum()
    ref.backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-5, rtol=1e-4)


def test_backend_errors_are_clear():
    with pytest.raises(ValueError, match="backend must be one of"):
        ops.instance_norm_act(torch.randn(1, 1, 2, 2), backend="cuda-magic")
    with pytest.raises(ValueError, match="act must be 'none' with residual"):
        ops.instance_norm_act(torch.randn(1, 1, 2, 2), residual=torch.randn(1, 1, 2, 2), act="relu")
    if not torch.cuda.is_available():
        meta = torch.randn(1, 1, 2, 2, device="meta")
        with pytest.raises(RuntimeError, match="CPU tensors only"):
            ops.instance_norm_act(meta, backend="cpp")


def test_losses_match_torch():
    a, b = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4)
    torch.testing.assert_close(ops.lsgan_loss(a, 1.0), torch.nn.functional.mse_loss(a, torch.ones_like(a)))
    torch.testing.assert_close(ops.l1_loss(a, b), torch.nn.functional.l1_loss(a, b))
    z = torch.zeros(4, requires_grad=True)
    ops.l1_loss(z, torch.zeros(4)).backward()
    assert torch.equal(z.grad, torch.zeros(4))  # sign(0) = 0


@pytest.mark.parametrize("act,residual", CASES)
def test_reference_gradcheck_fp64(act, residual):
    x, w, b, r = _inputs((2, 3, 4, 5), torch.float64, True, residual)
    args = tuple(t for t in (x, w, b, r) if t is not None)
    assert torch.autograd.gradcheck(lambda *a: reference.instance_norm_act(*a, act=act), args)
    p = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: reference.lsgan_loss(t, 1.0), (p,))
    assert torch.autograd.gradcheck(lambda t: reference.l1_loss(t, torch.zeros_like(t) + 0.1), (p,))


def test_the_resolver_takes_the_explicit_backend_else_auto_and_refuses_unknown_names():
    cpu = torch.device("cpu")
    assert ops.resolve("instance_norm", None, cpu) == ("cpp" if ops.cpp_available() else "reference")
    assert ops.resolve("instance_norm", "reference", cpu) == "reference"
    with pytest.raises(ValueError, match="backend must be one of"):
        ops.resolve("loss", "fast", cpu)
    with pytest.raises(RuntimeError, match="CPU tensors only"):
        ops.resolve("loss", "cpp", torch.device("cuda"))
    # A run's configured backend: compiled, "auto" is the reference (Inductor fuses it); explicit kept.
    assert ops.run_backend("auto", compiled=True) == "reference"
    assert ops.run_backend("auto", compiled=False) == "auto"
    assert ops.run_backend("cpp", compiled=True) == "cpp"


def test_use_backend_is_the_runs_default_for_its_block_only():
    cpu = torch.device("cpu")
    outside = ops.resolve("instance_norm", None, cpu)
    with ops.use_backend("reference"):
        assert ops.resolve("instance_norm", None, cpu) == "reference"
        assert ops.resolve("instance_norm", "cpp", cpu) == "cpp"          # an explicit backend still wins
        with ops.use_backend(None):                              # None leaves the run's choice
            assert ops.resolve("instance_norm", None, cpu) == "reference"
    assert ops.resolve("instance_norm", None, cpu) == outside
    with pytest.raises(RuntimeError), ops.use_backend("reference"):
        raise RuntimeError("a failed step")
    assert ops.resolve("instance_norm", None, cpu) == outside            # restored after an error too
    with pytest.raises(ValueError, match="backend must be one of"), ops.use_backend("cuda"):
        pass


@pytest.mark.skipif(not ops.cpp_available() or not ops.triton_available(), reason="needs both fused backends")
def test_each_fused_function_is_one_registered_op():
    """One torch.library op per function of each fused backend (forward and backward of the two op
    families): the Triton ops serve CUDA and the CPU interpreter alike."""
    ops.register_triton_ops()   # a CPU process registers the Triton ops on first need
    ours = {s.name.split("::")[1] for s in torch._C._jit_get_all_schemas() if s.name.startswith("duiit_fast::")}
    assert ours == {f"{family}_{backend}{part}" for family in ("instance_norm_act", "loss")
                    for backend in ("cpp", "triton") for part in ("", "_backward")}
