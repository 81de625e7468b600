"""instance_norm_act: act(IN(x)·w + b), or residual + IN(x)·w + b, on (N, C, H, W) (docs/ops.md).

Read top to bottom: the eager reference (the oracle), the contract every fused implementation
keeps (kernel codes, output shapes, the autograd formula), the C++ op (duiit_fast._C, csrc/), the
Triton op (kernels/), and the public function that picks one (ops/dispatch.py).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import dispatch
from .dispatch import contiguous_or_none, numpy_view

ACTIVATIONS = ("relu", "leaky_relu", "none")


# -- reference: eager PyTorch, any device and dtype ------------------------------------------------

def check_activation(act: str, residual: Optional[Tensor]) -> None:
    if act not in ACTIVATIONS:
        raise ValueError(f"act must be one of {ACTIVATIONS}, got {act!r}")
    if residual is not None and act != "none":
        raise ValueError("a residual is added after the norm: act must be 'none' with residual")


def instance_norm_act_ref(x: Tensor, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
                          residual: Optional[Tensor] = None, act: str = "relu", slope: float = 0.2,
                          eps: float = 1e-5, upcast: bool = True) -> Tensor:
    """y = act(IN(x)·w + b); with residual: y = residual + IN(x)·w + b. IN normalises each (n, c)
    plane over its spatial dims with the biased variance, as nn.InstanceNorm2d without running
    statistics. upcast: half-precision inputs are computed in fp32 and the result cast back."""
    check_activation(act, residual)
    if x.dim() < 3:
        raise ValueError(f"instance_norm_act needs (N, C, ...) input, got shape {tuple(x.shape)}")
    dtype = torch.float32 if upcast and x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    xc = x.to(dtype)
    dims = tuple(range(2, x.dim()))
    mean = xc.mean(dim=dims, keepdim=True)
    var = (xc - mean).square().mean(dim=dims, keepdim=True)  # two-pass, never E[x²] − E[x]²
    y = (xc - mean) * torch.rsqrt(var + eps)
    param_shape = (1, -1) + (1,) * (x.dim() - 2)
    if weight is not None:
        y = y * weight.to(dtype).reshape(param_shape)
    if bias is not None:
        y = y + bias.to(dtype).reshape(param_shape)
    if residual is not None:
        y = y + residual.to(dtype)
    elif act == "relu":
        y = F.relu(y)
    elif act == "leaky_relu":
        y = F.leaky_relu(y, slope)
    return y.to(x.dtype)


# -- contract: what every fused implementation takes and returns -------------------------------------
#   forward(x, weight, bias, residual, act, slope, eps) -> (y, mean, rstd)
#   backward(grad_y, x, mean, rstd, weight, bias, act, slope, need_weight_grads) -> (grad_x, grad_w, grad_b)

ACT_CODES = {"none": 0, "relu": 1, "leaky_relu": 2}   # csrc/ and kernels/ use the same numbers


def _plane_stats(x: Tensor) -> Tensor:
    return x.new_empty(x.shape[:2])


def _register_autograd(forward_op, backward_op) -> None:
    def setup_context(ctx, inputs, output):
        x, weight, bias, residual, act, slope, eps = inputs
        _, mean, rstd = output
        ctx.save_for_backward(x, mean, rstd, weight, bias)
        ctx.act, ctx.slope, ctx.has_residual = act, slope, residual is not None

    def backward(ctx, grad_y, _grad_mean, _grad_rstd):
        # mean and rstd are saved statistics, not outputs anyone differentiates.
        x, mean, rstd, weight, bias = ctx.saved_tensors
        need_w = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        grad_x, grad_w, grad_b = backward_op(grad_y, x, mean, rstd, weight, bias, ctx.act, ctx.slope, need_w)
        return (grad_x, grad_w if ctx.needs_input_grad[1] else None,
                grad_b if ctx.needs_input_grad[2] else None,
                grad_y if ctx.has_residual else None, None, None, None)

    forward_op.register_autograd(backward, setup_context=setup_context)


# -- C++ (CPU): numpy views of contiguous tensors, outputs always contiguous -------------------------

@torch.library.custom_op("duiit_fast::instance_norm_act_cpp", mutates_args=())
def instance_norm_act_cpp(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                          residual: Optional[Tensor], act: str, slope: float,
                          eps: float) -> tuple[Tensor, Tensor, Tensor]:
    x = x.contiguous()
    y, mean, rstd = torch.empty_like(x), _plane_stats(x), _plane_stats(x)
    dispatch._C.instance_norm_act_forward(x.numpy(), numpy_view(weight), numpy_view(bias), numpy_view(residual),
                                          y.numpy(), mean.numpy(), rstd.numpy(), ACT_CODES[act], slope, eps)
    return y, mean, rstd


@instance_norm_act_cpp.register_fake
def _(x, weight, bias, residual, act, slope, eps):
    return torch.empty_like(x, memory_format=torch.contiguous_format), _plane_stats(x), _plane_stats(x)


@torch.library.custom_op("duiit_fast::instance_norm_act_cpp_backward", mutates_args=())
def instance_norm_act_cpp_backward(grad_y: Tensor, x: Tensor, mean: Tensor, rstd: Tensor,
                                   weight: Optional[Tensor], bias: Optional[Tensor], act: str,
                                   slope: float, need_weight_grads: bool) -> tuple[Tensor, Tensor, Tensor]:
    x = x.contiguous()
    grad_x = torch.empty_like(x)
    grad_w, grad_b = x.new_zeros(x.shape[1]), x.new_zeros(x.shape[1])
    dispatch._C.instance_norm_act_backward(
        numpy_view(grad_y), x.numpy(), numpy_view(mean), numpy_view(rstd), numpy_view(weight), numpy_view(bias),
        grad_x.numpy(), grad_w.numpy() if need_weight_grads else None, grad_b.numpy() if need_weight_grads else None,
        ACT_CODES[act], slope)
    return grad_x, grad_w, grad_b


@instance_norm_act_cpp_backward.register_fake
def _(grad_y, x, mean, rstd, weight, bias, act, slope, need_weight_grads):
    c = x.shape[1]
    return torch.empty_like(x, memory_format=torch.contiguous_format), x.new_empty(c), x.new_empty(c)


_register_autograd(instance_norm_act_cpp, instance_norm_act_cpp_backward)


# -- Triton (CUDA; CPU under TRITON_INTERPRET=1), registered on first need --------------------------------
# Registered on first need (dispatch.registered_on_first_use). A channels_last
# input goes to the NHWC kernels and comes back channels_last (the layout the convolutions around it
# want); every other input is made contiguous NCHW.

def _is_channels_last(x: Tensor) -> bool:
    # A tensor with C == 1 or H·W == 1 is both: it takes the NCHW kernels.
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _kernels_and_layout(x: Tensor):
    from ..kernels import instance_norm, instance_norm_nhwc
    if _is_channels_last(x):
        return instance_norm_nhwc, torch.channels_last
    return instance_norm, torch.contiguous_format


def _fp32_stats(x: Tensor) -> Tensor:
    # Statistics in fp32 (fp64 for fp64 inputs) whatever the input precision.
    return torch.empty(x.shape[:2], dtype=torch.float64 if x.dtype == torch.float64 else torch.float32,
                       device=x.device)


def _register_triton_ops():
    from torch.library import triton_op, wrap_triton

    @triton_op("duiit_fast::instance_norm_act_triton", mutates_args=())
    def forward(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], residual: Optional[Tensor],
                act: str, slope: float, eps: float) -> tuple[Tensor, Tensor, Tensor]:
        kernels, layout = _kernels_and_layout(x)
        x = x.contiguous(memory_format=layout)
        residual = None if residual is None else residual.contiguous(memory_format=layout)
        y, mean, rstd = torch.empty_like(x, memory_format=layout), _fp32_stats(x), _fp32_stats(x)
        kernels.instance_norm_act_forward(x, contiguous_or_none(weight), contiguous_or_none(bias), residual,
                                          ACT_CODES[act], slope, eps, y, mean, rstd, launch=wrap_triton)
        return y, mean, rstd

    @triton_op("duiit_fast::instance_norm_act_triton_backward", mutates_args=())
    def backward(grad_y: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, weight: Optional[Tensor],
                 bias: Optional[Tensor], act: str, slope: float,
                 need_weight_grads: bool) -> tuple[Tensor, Tensor, Tensor]:
        kernels, layout = _kernels_and_layout(x)
        x, grad_y = x.contiguous(memory_format=layout), grad_y.contiguous(memory_format=layout)
        grad_x = torch.empty_like(x, memory_format=layout)
        sum_g, sum_gx = torch.empty_like(mean), torch.empty_like(mean)
        kernels.instance_norm_act_backward(grad_y, x, mean, rstd, contiguous_or_none(weight), contiguous_or_none(bias),
                                           ACT_CODES[act], slope, grad_x, sum_g, sum_gx, launch=wrap_triton)
        param_dtype = weight.dtype if weight is not None else x.dtype
        # Per-plane sums → per-channel gradients: a fixed-order reduction over the batch.
        return grad_x, sum_gx.sum(0).to(param_dtype), sum_g.sum(0).to(param_dtype)

    _register_autograd(forward, backward)
    return forward, backward


triton_ops = dispatch.registered_on_first_use(_register_triton_ops)   # () → (forward, backward)


# -- public ----------------------------------------------------------------------------------------------

def instance_norm_act(x: Tensor, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
                      residual: Optional[Tensor] = None, act: str = "relu", slope: float = 0.2,
                      eps: float = 1e-5, backend: Optional[str] = None) -> Tensor:
    """act(IN(x)·w + b), or residual + IN(x)·w + b (act "none"), on (N, C, H, W), by the backend
    dispatch.resolve picks."""
    check_activation(act, residual)
    if x.dim() != 4:
        raise ValueError(f"instance_norm_act expects (N, C, H, W), got shape {tuple(x.shape)}")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"residual shape {tuple(residual.shape)} != x shape {tuple(x.shape)}")
    name = dispatch.resolve("instance_norm", backend, x.device)
    if name == "reference":
        return instance_norm_act_ref(x, weight, bias, residual, act, slope, eps)
    (x32, w, b, r), original = dispatch.upcast_for_cpp(name, x, weight, bias, residual)
    op = instance_norm_act_cpp if name == "cpp" else triton_ops()[0]
    y = op(x32, w, b, r, act, float(slope), float(eps))[0]
    return y if original is None else y.to(original)
