"""The Triton backend as torch.library ops: one `torch.library.triton_op` per function (forward and
backward of each op family), whose kernels are launched through `wrap_triton`.

On CUDA, torch.compile/Inductor traces through a triton_op and sees its kernels; the fake
implementation comes from tracing. On CPU under TRITON_INTERPRET=1 (the CI tier) the same ops run
eagerly; the interpreter reads data pointers, so they cannot be traced with fake tensors there (no
torch.compile or opcheck on CPU: tests/test_gpu.py runs those on CUDA).
The kernel modules are imported on first use: `@triton.jit` must not run before
TRITON_INTERPRET is set, and never on a machine that only uses the other backends.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.library import triton_op, wrap_triton

from .contract import ACT_CODES, LOSS_CODES, register_instance_norm_autograd, \
    register_loss_autograd


# channels_last activations go to the NHWC kernels as they are; False copies them to NCHW first
# (what every channels_last input cost before those kernels: kept for the A/B on a GPU).
NHWC_KERNELS = True


def _loss_kernels():
    from ..kernels import losses
    return losses


def _norm_kernels_and_layout(x: Tensor):
    """The instance-norm kernel module for x's layout, and the memory format it works in."""
    from ..kernels import instance_norm, instance_norm_nhwc
    if NHWC_KERNELS and _is_channels_last(x):
        return instance_norm_nhwc, torch.channels_last
    return instance_norm, torch.contiguous_format


def _is_channels_last(x: Tensor) -> bool:
    # A tensor with C == 1 or H·W == 1 is both: it takes the NCHW kernels.
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _contiguous(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None else t.contiguous()


def _stats(x: Tensor) -> Tensor:
    # Statistics in fp32 (fp64 for fp64 inputs) whatever the input precision.
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return torch.empty(x.shape[:2], dtype=dtype, device=x.device)


def _in_forward(x, weight, bias, residual, act, slope, eps):
    kernels, layout = _norm_kernels_and_layout(x)
    x = x.contiguous(memory_format=layout)
    residual = None if residual is None else residual.contiguous(memory_format=layout)
    y, mean, rstd = torch.empty_like(x, memory_format=layout), _stats(x), _stats(x)
    kernels.instance_norm_act_forward(x, _contiguous(weight), _contiguous(bias), residual,
                                      ACT_CODES[act], slope, eps, y, mean, rstd, launch=wrap_triton)
    return y, mean, rstd


def _in_backward(grad_y, x, mean, rstd, weight, bias, act, slope):
    kernels, layout = _norm_kernels_and_layout(x)
    x, grad_y = x.contiguous(memory_format=layout), grad_y.contiguous(memory_format=layout)
    grad_x = torch.empty_like(x, memory_format=layout)
    sum_g, sum_gx = torch.empty_like(mean), torch.empty_like(mean)
    kernels.instance_norm_act_backward(grad_y, x, mean, rstd, _contiguous(weight), _contiguous(bias),
                                       ACT_CODES[act], slope, grad_x, sum_g, sum_gx, launch=wrap_triton)
    param_dtype = weight.dtype if weight is not None else x.dtype
    # Per-plane sums → per-channel gradients: a fixed-order reduction over the batch.
    return grad_x, sum_gx.sum(0).to(param_dtype), sum_g.sum(0).to(param_dtype)


def _loss_forward(a, b, target, kind):
    losses = _loss_kernels()
    a = a.contiguous()
    acc = torch.float64 if a.dtype == torch.float64 else torch.float32
    partials = torch.empty(losses.num_partials(a.numel()), dtype=acc, device=a.device)
    losses.loss_forward_partials(a, _contiguous(b), target, LOSS_CODES[kind], partials, launch=wrap_triton)
    return (partials.sum() / a.numel()).to(a.dtype)


def _loss_backward(grad_out, a, b, target, kind, need_grad_b):
    losses = _loss_kernels()
    a = a.contiguous()
    grad_a = torch.empty_like(a)
    write_b = b is not None and need_grad_b   # a data target gets no gradient written
    grad_b = torch.empty_like(a) if write_b else a.new_empty(0)
    losses.loss_backward(a, _contiguous(b), target, LOSS_CODES[kind], grad_out.contiguous(), grad_a,
                         grad_b if write_b else None, launch=wrap_triton)
    return grad_a, grad_b


@triton_op("duiit_fast::instance_norm_act_triton", mutates_args=())
def instance_norm_act(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                           residual: Optional[Tensor], act: str, slope: float,
                           eps: float) -> tuple[Tensor, Tensor, Tensor]:
    return _in_forward(x, weight, bias, residual, act, slope, eps)


@triton_op("duiit_fast::instance_norm_act_triton_backward", mutates_args=())
def instance_norm_act_backward(grad_y: Tensor, x: Tensor, mean: Tensor, rstd: Tensor,
                                    weight: Optional[Tensor], bias: Optional[Tensor], act: str,
                                    slope: float, need_weight_grads: bool) -> tuple[Tensor, Tensor, Tensor]:
    return _in_backward(grad_y, x, mean, rstd, weight, bias, act, slope)


@triton_op("duiit_fast::loss_triton", mutates_args=())
def loss(a: Tensor, b: Optional[Tensor], target: float, kind: str) -> Tensor:
    return _loss_forward(a, b, target, kind)


@triton_op("duiit_fast::loss_triton_backward", mutates_args=())
def loss_backward(grad_out: Tensor, a: Tensor, b: Optional[Tensor], target: float,
                       kind: str, need_grad_b: bool) -> tuple[Tensor, Tensor]:
    return _loss_backward(grad_out, a, b, target, kind, need_grad_b)


register_instance_norm_autograd(instance_norm_act, instance_norm_act_backward)
register_loss_autograd(loss, loss_backward)
