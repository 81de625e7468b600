"""The op layer: one function per fused op, dispatching to an implementation by backend.

Backends:
  reference  eager PyTorch (duiit_fast.reference), any device and dtype: the oracle;
  cpp        C++/OpenMP kernels of duiit_fast._C, CPU tensors, registered as torch.library
             custom ops with fake implementations and autograd, so they work under
             torch.compile(fullgraph=True);
  auto       cpp on CPU when the extension is built, reference otherwise.
`backend=None` takes the process default: DUIIT_BACKEND from the environment, else "auto"
(`set_default_backend` changes it; TrainConfig.backend is passed explicitly to the models).

The losses run the reference expressions on every backend for now: they are elementwise
reductions that torch already executes in one pass on the CPU.
"""
from __future__ import annotations

import os
from typing import Optional

import torch
from torch import Tensor

from . import reference

BACKENDS = ("reference", "cpp", "auto")
_ACT_CODES = {"none": 0, "relu": 1, "leaky_relu": 2}
_default_backend: Optional[str] = None

try:
    from . import _C  # the compiled extension; absent in a source tree that was never built
except ImportError as exc:  # pragma: no cover - exercised only without a build
    _C = None
    _C_IMPORT_ERROR = str(exc)
else:
    _C_IMPORT_ERROR = ""


def cpp_available() -> bool:
    return _C is not None


def set_default_backend(name: Optional[str]) -> None:
    """Set the process-wide backend used when an op is called with backend=None."""
    global _default_backend
    if name is not None:
        _check_backend_name(name)
    _default_backend = name


def _check_backend_name(name: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")


def resolve_backend(backend: Optional[str], device: torch.device) -> str:
    """The concrete backend ("reference" or "cpp") for a tensor on `device`."""
    name = backend or _default_backend or os.environ.get("DUIIT_BACKEND") or "auto"
    _check_backend_name(name)
    if name == "auto":
        return "cpp" if device.type == "cpu" and cpp_available() else "reference"
    if name == "cpp":
        if device.type != "cpu":
            raise RuntimeError(f"backend 'cpp' runs on CPU tensors only; this tensor is on {device}")
        if not cpp_available():
            raise RuntimeError(f"backend 'cpp' needs the compiled extension duiit_fast._C ({_C_IMPORT_ERROR})")
    return name


# ---------------------------------------------------------------------------------------------
# instance_norm_act on the C++ backend: a forward op returning (y, mean, rstd) and a backward op.
# Inputs are made contiguous NCHW here; the outputs are always contiguous, in the fake too.

_CPP_DTYPES = (torch.float32, torch.float64)


def _np(t: Optional[Tensor]):
    return None if t is None else t.detach().numpy()


@torch.library.custom_op("duiit_fast::instance_norm_act_cpp", mutates_args=())
def _instance_norm_act_cpp(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                           residual: Optional[Tensor], act: str, slope: float,
                           eps: float) -> tuple[Tensor, Tensor, Tensor]:
    x = x.contiguous()
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    mean = x.new_empty(x.shape[:2])
    rstd = x.new_empty(x.shape[:2])
    contiguous = [None if t is None else t.contiguous() for t in (weight, bias, residual)]
    _C.instance_norm_act_forward(x.numpy(), *(_np(t) for t in contiguous), y.numpy(), mean.numpy(),
                                 rstd.numpy(), _ACT_CODES[act], slope, eps)
    return y, mean, rstd


@_instance_norm_act_cpp.register_fake
def _(x, weight, bias, residual, act, slope, eps):
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    return y, x.new_empty(x.shape[:2]), x.new_empty(x.shape[:2])


@torch.library.custom_op("duiit_fast::instance_norm_act_cpp_backward", mutates_args=())
def _instance_norm_act_cpp_backward(grad_y: Tensor, x: Tensor, mean: Tensor, rstd: Tensor,
                                    weight: Optional[Tensor], bias: Optional[Tensor], act: str,
                                    slope: float, need_weight_grads: bool
                                    ) -> tuple[Tensor, Tensor, Tensor]:
    grad_y, x = grad_y.contiguous(), x.contiguous()
    grad_x = torch.empty_like(x, memory_format=torch.contiguous_format)
    channels = x.shape[1]
    grad_w = x.new_zeros(channels)
    grad_b = x.new_zeros(channels)
    w = None if weight is None else weight.contiguous()
    b = None if bias is None else bias.contiguous()
    _C.instance_norm_act_backward(
        grad_y.numpy(), x.numpy(), mean.contiguous().numpy(), rstd.contiguous().numpy(), _np(w),
        _np(b), grad_x.numpy(), grad_w.numpy() if need_weight_grads else None,
        grad_b.numpy() if need_weight_grads else None, _ACT_CODES[act], slope)
    return grad_x, grad_w, grad_b


@_instance_norm_act_cpp_backward.register_fake
def _(grad_y, x, mean, rstd, weight, bias, act, slope, need_weight_grads):
    channels = x.shape[1]
    return (torch.empty_like(x, memory_format=torch.contiguous_format), x.new_empty(channels),
            x.new_empty(channels))


def _cpp_setup_context(ctx, inputs, output):
    x, weight, bias, residual, act, slope, eps = inputs
    _, mean, rstd = output
    ctx.save_for_backward(x, mean, rstd, weight, bias)
    ctx.act, ctx.slope = act, slope
    ctx.has_residual = residual is not None


def _cpp_backward(ctx, grad_y, grad_mean, grad_rstd):
    # mean and rstd are saved statistics, not outputs users differentiate: their grads are ignored.
    x, mean, rstd, weight, bias = ctx.saved_tensors
    need_weight_grads = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
    grad_x, grad_w, grad_b = _instance_norm_act_cpp_backward(
        grad_y, x, mean, rstd, weight, bias, ctx.act, ctx.slope, need_weight_grads)
    grad_residual = grad_y if ctx.has_residual else None
    return (grad_x,
            grad_w if ctx.needs_input_grad[1] else None,
            grad_b if ctx.needs_input_grad[2] else None,
            grad_residual, None, None, None)


_instance_norm_act_cpp.register_autograd(_cpp_backward, setup_context=_cpp_setup_context)


def _instance_norm_act_on_cpp(x, weight, bias, residual, act, slope, eps):
    if x.dtype in _CPP_DTYPES:
        return _instance_norm_act_cpp(x, weight, bias, residual, act, slope, eps)[0]
    # Half precision on the CPU: the C++ kernel computes in float32 and the result is cast back.
    as32 = [None if t is None else t.float() for t in (weight, bias, residual)]
    return _instance_norm_act_cpp(x.float(), *as32, act, slope, eps)[0].to(x.dtype)


# ---------------------------------------------------------------------------------------------
# Public ops


def instance_norm_act(x: Tensor, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
                      residual: Optional[Tensor] = None, act: str = "relu", slope: float = 0.2,
                      eps: float = 1e-5, backend: Optional[str] = None) -> Tensor:
    """act(IN(x)·w + b), or residual + IN(x)·w + b; see DESIGN.md's op table."""
    reference.check_activation(act, residual)
    if x.dim() != 4:
        raise ValueError(f"instance_norm_act expects (N, C, H, W), got shape {tuple(x.shape)}")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"residual shape {tuple(residual.shape)} != x shape {tuple(x.shape)}")
    if resolve_backend(backend, x.device) == "cpp":
        return _instance_norm_act_on_cpp(x, weight, bias, residual, act, float(slope), float(eps))
    return reference.instance_norm_act(x, weight, bias, residual, act, slope, eps)


def lsgan_loss(pred: Tensor, target: float, backend: Optional[str] = None) -> Tensor:
    """mean((pred - target)^2): the least-squares GAN loss (real target 1, fake 0)."""
    resolve_backend(backend, pred.device)
    return reference.lsgan_loss(pred, float(target))


def l1_loss(a: Tensor, b: Tensor, backend: Optional[str] = None) -> Tensor:
    """mean(|a - b|), gradient sign(a - b)/n with sign(0) = 0."""
    if a.shape != b.shape:
        raise ValueError(f"l1_loss needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    resolve_backend(backend, a.device)
    return reference.l1_loss(a, b)
