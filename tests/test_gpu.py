"""CUDA: the Triton backend (triton_op) against the reference, fp32 and bf16, and under
torch.compile. Marker `gpu`; skipped with a reason where CUDA is absent."""
import dataclasses
import math

import pytest

from conftest import replaced
import torch

from duiit_fast import ops
from duiit_fast.ops import reference

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")]


def _tol(dtype):
    return dict(atol=3e-2, rtol=3e-2) if dtype == torch.bfloat16 else dict(atol=1e-4, rtol=1e-4)


def _err(out, ref64):
    return (out.double() - ref64).abs().max().item()


@pytest.mark.parametrize("shape", [(16, 256, 64, 64), (2, 3, 63, 21), (4, 8, 1, 1), (1, 4, 300, 300)])
@pytest.mark.parametrize("act,residual", [("relu", False), ("leaky_relu", False), ("none", True)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_cuda_instance_norm_matches_reference(shape, act, residual, dtype, layout):
    x = torch.randn(shape, device="cuda", dtype=dtype).to(memory_format=layout).requires_grad_()
    w = torch.randn(shape[1], device="cuda", dtype=dtype, requires_grad=True)
    r = torch.randn(shape, device="cuda", dtype=dtype).to(memory_format=layout).requires_grad_() if residual else None
    y = ops.instance_norm_act(x, w, None, r, act=act, backend="triton")
    assert y.is_contiguous(memory_format=layout)   # channels_last in, channels_last out (NHWC kernels)
    y_ref = reference.instance_norm_act(x, w, None, r, act=act)
    # fused error within twice the same-dtype eager error (vs an fp64 oracle), plus a floor
    y64 = reference.instance_norm_act(x.double(), w.double(), None, None if r is None else r.double(), act=act)
    assert _err(y, y64) <= 2 * _err(y_ref, y64) + _tol(dtype)["atol"]
    g = torch.randn_like(y)
    if act != "none":
        # At the activation's kink the two sides are both right: an element whose pre-activation is
        # within rounding of 0 may take either slope (one in 16.7M did, H100, fp32 channels_last).
        # No upstream gradient there, so the comparison tests the kernels, not the kink.
        z = reference.instance_norm_act(x.detach().double(), w.detach().double(), act="none")
        g = torch.where(z.abs() < 1e-5, 0.0, g)
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


def test_cuda_channels_last_triton_op_compiles_with_inductor():
    """The NHWC kernels inside a compiled graph, as the CUDA fast path runs them (channels_last)."""
    x = torch.randn(4, 16, 32, 32, device="cuda").to(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(16, device="cuda", requires_grad=True)
    fn = torch.compile(lambda t, s: ops.instance_norm_act(t, s, act="leaky_relu", backend="triton").square().mean(),
                       fullgraph=True)
    out = fn(x, w)
    out.backward()
    x2, w2 = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    ref = reference.instance_norm_act(x2, w2, act="leaky_relu").square().mean()
    ref.backward()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(w.grad, w2.grad, atol=1e-5, rtol=1e-4)


def test_cuda_opcheck():
    from duiit_fast.ops import instance_norm, losses
    norm, loss = instance_norm.triton_ops()[0], losses.triton_ops()[0]
    x = torch.randn(2, 3, 8, 8, device="cuda", requires_grad=True)
    torch.library.opcheck(norm, (x, None, None, None, "relu", 0.2, 1e-5))
    x_cl = torch.randn(2, 8, 8, 8, device="cuda").to(memory_format=torch.channels_last).requires_grad_()
    torch.library.opcheck(norm, (x_cl, None, None, None, "relu", 0.2, 1e-5))
    torch.library.opcheck(loss, (x, None, 1.0, "lsgan"))


# -- the joint step on CUDA: the Trainer's own path, not only the ops --------------------------

def _cuda_first_step(cfg):
    from test_fast import _first_step
    return _first_step(dataclasses.replace(cfg, device="cuda"))


@pytest.fixture
def exact_fp32():
    """cuDNN convolutions default to TF32 on CUDA (10-bit mantissa): fp32 comparisons of whole
    steps turn it off so that a tolerance of 1e-4 tests the kernels, not TF32's rounding."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("setting", ["MIX-CT-MRI", "CYCLEGAN-CT-MRI", "PURE-CT"])
def test_cuda_joint_step_triton_matches_reference(tiny_config, exact_fp32, setting):
    from test_fast import _assert_grads_close
    base = tiny_config(setting, compile="off", precision="fp32", translator_warmup_steps=2)
    _, ref_parts, ref_grads = _cuda_first_step(dataclasses.replace(base, backend="reference"))
    trainer, parts, grads = _cuda_first_step(dataclasses.replace(base, backend="triton", out_dir=base.out_dir + "-t"))
    assert trainer.fast.backend == "triton" and next(trainer.nets["P"].parameters()).is_cuda
    assert parts == pytest.approx(ref_parts, rel=1e-4)
    _assert_grads_close(grads, ref_grads, 1e-4)


def test_cuda_compiled_triton_step_matches_eager_reference(tiny_config, exact_fp32):
    from test_fast import _assert_grads_close
    base = tiny_config("MIX-CT-MRI", precision="fp32", translator_warmup_steps=2)
    _, ref_parts, ref_grads = _cuda_first_step(replaced(base, compile="off", backend="reference"))
    trainer, parts, grads = _cuda_first_step(replaced(base, compile="on", backend="triton",
                                                                 out_dir=base.out_dir + "-c"))
    assert trainer.fast.compile
    assert parts == pytest.approx(ref_parts, rel=1e-4)
    _assert_grads_close(grads, ref_grads, 1e-4)


def test_cuda_bf16_step_stays_close_to_fp32(tiny_config):
    base = tiny_config("MIX-CT-MRI", compile="off", translator_warmup_steps=2)
    _, ref_parts, _ = _cuda_first_step(replaced(base, precision="fp32"))
    trainer, parts, _ = _cuda_first_step(replaced(base, precision="bf16", out_dir=base.out_dir + "-b"))
    assert trainer.fast.bf16
    assert all(p.dtype == torch.float32 for net in trainer.nets.values() for p in net.parameters())
    assert parts == pytest.approx(ref_parts, rel=0.05)


def _sync_free(fn):
    """Run fn under CUDA's sync debug mode "error": any host sync inside raises."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        return fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("fast", [dict(compile="off", precision="fp32"), dict(compile="off", precision="bf16")])
def test_cuda_joint_step_never_synchronizes(tiny_config, fast):
    """Forward, backward, both optimiser steps and the image pools run without a host sync: the
    host can queue the next step while the device works."""
    from duiit_fast import Trainer
    from duiit_fast.train.step import SourceBatch, joint_step
    trainer = Trainer(tiny_config("MIX-CT-MRI", device="cuda", translator_warmup_steps=0, **fast), progress=False)
    trainer.prepare()
    trainer.read_step(trainer.train_step(), "warm-up step")   # first step: lazy state, allocations
    x, r_x = trainer.draw(trainer.data.ct_train, "ct")
    sources = {"mri": SourceBatch(*trainer.draw(trainer.data.sources["mri"], "mri"))}
    parts = _sync_free(lambda: joint_step(trainer.nets, trainer.optimizers, trainer.pools, x, r_x, sources,
                                          trainer.cfg, fns=trainer.step_functions))
    assert all(math.isfinite(v) for v in trainer.read_step(parts, "step").values())


def test_cuda_training_step_with_sampling_never_synchronizes(tiny_config):
    """The whole step as the loop runs it, batch sampling and host→device copies included."""
    from duiit_fast import Trainer
    trainer = Trainer(tiny_config("MIX-CT-MRI", device="cuda", compile="off", translator_warmup_steps=0),
                      progress=False)
    trainer.prepare()
    trainer.read_step(trainer.train_step(), "warm-up step")
    parts = _sync_free(trainer.train_step)
    assert all(math.isfinite(v) for v in trainer.read_step(parts, "step").values())


def test_cuda_auto_fast_path_trains(tiny_config):
    """What a GPU user gets by default: compiled, bf16, channels_last, reference ops (Inductor fuses
    them), fused Adam."""
    from duiit_fast import Trainer
    trainer = Trainer(tiny_config("MIX-CT-MRI", device="cuda", translator_warmup_steps=2), progress=False)
    trainer.fit()
    f = trainer.fast
    assert (f.compile, f.bf16, f.channels_last, f.fused_optimizer, f.backend) == (True, True, True, True, "reference")
    assert len(trainer.history) == 2 and all(r["pairs_per_s"] > 0 for r in trainer.history)
