"""lsgan_loss and l1_loss: mean((pred − target)²) and mean(|a − b|) (docs/ops.md).

Read top to bottom: the eager references (the oracle), the contract every fused implementation keeps
(kernel codes, output shapes, the autograd formula), the C++ op (duiit_fast._C, csrc/), the Triton
op (kernels/), and the public functions that pick one (ops/dispatch.py). One op serves both losses.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import dispatch
from .dispatch import contiguous_or_none, numpy_view


# -- reference: eager PyTorch, any device and dtype ------------------------------------------------

def _compute_dtype(x: Tensor, upcast: bool) -> torch.dtype:
    return torch.float32 if upcast and x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def lsgan_loss_ref(pred: Tensor, target: float, upcast: bool = True) -> Tensor:
    """Least-squares GAN loss: mean((pred − target)²)."""
    p = pred.to(_compute_dtype(pred, upcast))
    return (p - target).square().mean().to(pred.dtype)


def l1_loss_ref(a: Tensor, b: Tensor, upcast: bool = True) -> Tensor:
    """mean(|a − b|); its gradient is sign(a − b)/n with sign(0) = 0, as torch's abs."""
    dtype = _compute_dtype(a, upcast)
    return (a.to(dtype) - b.to(dtype)).abs().mean().to(a.dtype)


# -- contract -----------------------------------------------------------------------------------------
#   forward(a, b, target, kind) -> 0-dim mean                kind: "lsgan" (b None) | "l1"
#   backward(grad_out, a, b, target, kind, need_grad_b) -> (grad_a, grad_b or empty)

LOSS_CODES = {"lsgan": 0, "l1": 1}   # csrc/ and kernels/ use the same numbers


def _fake_forward(a, b, target, kind):
    return a.new_empty(())


def _fake_backward(grad_out, a, b, target, kind, need_grad_b):
    grad_a = torch.empty_like(a, memory_format=torch.contiguous_format)
    return grad_a, (torch.empty_like(grad_a) if b is not None and need_grad_b else a.new_empty(0))


def _register_autograd(forward_op, backward_op) -> None:
    def setup_context(ctx, inputs, output):
        a, b, target, kind = inputs
        ctx.save_for_backward(a, b)
        ctx.target, ctx.kind = target, kind

    def backward(ctx, grad_out):
        a, b = ctx.saved_tensors
        need_b = b is not None and ctx.needs_input_grad[1]
        grad_a, grad_b = backward_op(grad_out, a, b, ctx.target, ctx.kind, need_b)
        return grad_a, (grad_b if need_b else None), None, None

    forward_op.register_autograd(backward, setup_context=setup_context)


# -- C++ (CPU) -------------------------------------------------------------------------------------------

@torch.library.custom_op("duiit_fast::loss_cpp", mutates_args=())
def loss_cpp(a: Tensor, b: Optional[Tensor], target: float, kind: str) -> Tensor:
    value = dispatch._C.loss_forward(numpy_view(a), numpy_view(b), target, LOSS_CODES[kind])
    return torch.tensor(value, dtype=a.dtype)


loss_cpp.register_fake(_fake_forward)


@torch.library.custom_op("duiit_fast::loss_cpp_backward", mutates_args=())
def loss_cpp_backward(grad_out: Tensor, a: Tensor, b: Optional[Tensor], target: float,
                      kind: str, need_grad_b: bool) -> tuple[Tensor, Tensor]:
    """(grad_a, grad_b); grad_b is empty when b is None or needs no gradient (a data target:
    writing it would cost a full image-sized store for nothing)."""
    grad_a = torch.empty_like(a, memory_format=torch.contiguous_format)
    write_b = b is not None and need_grad_b
    grad_b = torch.empty_like(grad_a) if write_b else a.new_empty(0)
    # .item(): the scalar upstream gradient is read on the host; on the CPU this costs nothing.
    dispatch._C.loss_backward(numpy_view(a), numpy_view(b), target, LOSS_CODES[kind], float(grad_out.item()),
                              grad_a.numpy(), grad_b.numpy() if write_b else None)
    return grad_a, grad_b


loss_cpp_backward.register_fake(_fake_backward)
_register_autograd(loss_cpp, loss_cpp_backward)


# -- Triton (CUDA; CPU under TRITON_INTERPRET=1), registered on first need --------------------------------

def _register_triton_ops():
    from torch.library import triton_op, wrap_triton

    @triton_op("duiit_fast::loss_triton", mutates_args=())
    def forward(a: Tensor, b: Optional[Tensor], target: float, kind: str) -> Tensor:
        from ..kernels import losses
        a = a.contiguous()
        acc = torch.float64 if a.dtype == torch.float64 else torch.float32
        partials = torch.empty(losses.num_partials(a.numel()), dtype=acc, device=a.device)
        losses.loss_forward_partials(a, contiguous_or_none(b), target, LOSS_CODES[kind], partials, launch=wrap_triton)
        return (partials.sum() / a.numel()).to(a.dtype)

    @triton_op("duiit_fast::loss_triton_backward", mutates_args=())
    def backward(grad_out: Tensor, a: Tensor, b: Optional[Tensor], target: float, kind: str,
                 need_grad_b: bool) -> tuple[Tensor, Tensor]:
        from ..kernels import losses
        a = a.contiguous()
        grad_a = torch.empty_like(a)
        write_b = b is not None and need_grad_b   # a data target gets no gradient written
        grad_b = torch.empty_like(a) if write_b else a.new_empty(0)
        losses.loss_backward(a, contiguous_or_none(b), target, LOSS_CODES[kind], grad_out.contiguous(), grad_a,
                             grad_b if write_b else None, launch=wrap_triton)
        return grad_a, grad_b

    _register_autograd(forward, backward)
    return forward, backward


triton_ops = dispatch.registered_on_first_use(_register_triton_ops)   # () → (forward, backward)


# -- public ----------------------------------------------------------------------------------------------

def _loss(kind: str, a: Tensor, b: Optional[Tensor], target: float, backend: Optional[str]) -> Tensor:
    name = dispatch.resolve("loss", backend, a.device)
    if name == "reference":
        return lsgan_loss_ref(a, target) if kind == "lsgan" else l1_loss_ref(a, b)
    if a.numel() == 0:
        raise ValueError(f"{kind} loss of an empty tensor")
    (a32, b32), original = dispatch.upcast_for_cpp(name, a, b)
    op = loss_cpp if name == "cpp" else triton_ops()[0]
    value = op(a32, b32, float(target), kind)
    return value if original is None else value.to(original)


def lsgan_loss(pred: Tensor, target: float, backend: Optional[str] = None) -> Tensor:
    """mean((pred − target)²): the least-squares GAN loss (real target 1, fake 0)."""
    return _loss("lsgan", pred, None, target, backend)


def l1_loss(a: Tensor, b: Tensor, backend: Optional[str] = None) -> Tensor:
    """mean(|a − b|), gradient sign(a − b)/n with sign(0) = 0. Different float dtypes (a bf16
    output under autocast against an fp32 target) are computed in the wider one."""
    if a.shape != b.shape:
        raise ValueError(f"l1_loss needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.device != b.device:
        raise ValueError(f"l1_loss needs one device, got {a.device} and {b.device}")
    if a.dtype != b.dtype:
        common = torch.promote_types(a.dtype, b.dtype)
        a, b = a.to(common), b.to(common)
    return _loss("l1", a, b, 0.0, backend)
