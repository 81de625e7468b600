"""The C++ backend as torch.library custom ops (opaque to torch.compile, with fake kernels and
the contract's autograd).

The extension works on numpy views of contiguous CPU tensors; outputs are allocated here and
always contiguous, in the fake implementations too.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .contract import ACT_CODES, LOSS_CODES, fake_loss, fake_loss_backward, register_instance_norm_autograd, \
    register_loss_autograd

try:
    from .. import _C  # absent in a source tree that was never built
except ImportError as exc:  # pragma: no cover - exercised only without a build
    _C = None
    IMPORT_ERROR = str(exc)
else:
    IMPORT_ERROR = ""

def _np(t: Optional[Tensor]):
    return None if t is None else t.detach().contiguous().numpy()


def _stats_like(x: Tensor) -> Tensor:
    return x.new_empty(x.shape[:2])


@torch.library.custom_op("duiit_fast::instance_norm_act_cpp", mutates_args=())
def instance_norm_act(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                      residual: Optional[Tensor], act: str, slope: float,
                      eps: float) -> tuple[Tensor, Tensor, Tensor]:
    x = x.contiguous()
    y, mean, rstd = torch.empty_like(x), _stats_like(x), _stats_like(x)
    _C.instance_norm_act_forward(x.numpy(), _np(weight), _np(bias), _np(residual), y.numpy(),
                                 mean.numpy(), rstd.numpy(), ACT_CODES[act], slope, eps)
    return y, mean, rstd


@instance_norm_act.register_fake
def _(x, weight, bias, residual, act, slope, eps):
    return torch.empty_like(x, memory_format=torch.contiguous_format), _stats_like(x), _stats_like(x)


@torch.library.custom_op("duiit_fast::instance_norm_act_cpp_backward", mutates_args=())
def instance_norm_act_backward(grad_y: Tensor, x: Tensor, mean: Tensor, rstd: Tensor,
                               weight: Optional[Tensor], bias: Optional[Tensor], act: str,
                               slope: float, need_weight_grads: bool) -> tuple[Tensor, Tensor, Tensor]:
    x = x.contiguous()
    grad_x = torch.empty_like(x)
    grad_w, grad_b = x.new_zeros(x.shape[1]), x.new_zeros(x.shape[1])
    _C.instance_norm_act_backward(
        _np(grad_y), x.numpy(), _np(mean), _np(rstd), _np(weight), _np(bias), grad_x.numpy(),
        grad_w.numpy() if need_weight_grads else None, grad_b.numpy() if need_weight_grads else None,
        ACT_CODES[act], slope)
    return grad_x, grad_w, grad_b


@instance_norm_act_backward.register_fake
def _(grad_y, x, mean, rstd, weight, bias, act, slope, need_weight_grads):
    c = x.shape[1]
    return torch.empty_like(x, memory_format=torch.contiguous_format), x.new_empty(c), x.new_empty(c)


@torch.library.custom_op("duiit_fast::loss_cpp", mutates_args=())
def loss(a: Tensor, b: Optional[Tensor], target: float, kind: str) -> Tensor:
    value = _C.loss_forward(_np(a), _np(b), target, LOSS_CODES[kind])
    return torch.tensor(value, dtype=a.dtype)


loss.register_fake(fake_loss)


@torch.library.custom_op("duiit_fast::loss_cpp_backward", mutates_args=())
def loss_backward(grad_out: Tensor, a: Tensor, b: Optional[Tensor], target: float,
                  kind: str, need_grad_b: bool) -> tuple[Tensor, Tensor]:
    """(grad_a, grad_b); grad_b is empty when b is None or needs no gradient (a data target:
    writing it would cost a full image-sized store for nothing)."""
    grad_a = torch.empty_like(a, memory_format=torch.contiguous_format)
    write_b = b is not None and need_grad_b
    grad_b = torch.empty_like(grad_a) if write_b else a.new_empty(0)
    # .item(): the scalar upstream gradient is read on the host; on the CPU this costs nothing.
    _C.loss_backward(_np(a), _np(b), target, LOSS_CODES[kind], float(grad_out.item()), grad_a.numpy(),
                     grad_b.numpy() if write_b else None)
    return grad_a, grad_b


loss_backward.register_fake(fake_loss_backward)
register_instance_norm_autograd(instance_norm_act, instance_norm_act_backward)
register_loss_autograd(loss, loss_backward)
