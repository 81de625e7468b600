"""Triton LSGAN and L1 losses: a blockwise partial-sum forward and an elementwise backward.

lsgan_loss(p, t) = mean((p - t)²), d/dp = 2(p - t)/n
l1_loss(a, b)    = mean(|a - b|),  d/da = sign(a - b)/n (sign(0) = 0, as torch), d/db = -d/da
One kernel per direction serves both losses (constexpr LOSS: duiit_fast.ops.losses.LOSS_CODES,
lsgan 0, l1 1, as in csrc/). The forward writes one partial sum
per block and the host adds them: deterministic, unlike atomics. Bytes: the forward reads the
inputs once; the backward reads them again and writes each gradient.

No float is a runtime argument: Inductor launches user kernels (triton_op) with float scalars
typed fp64, which made `a - target` fp64 and failed to compile (H200, torch 2.11). The LSGAN
target is a constexpr (the step uses 1.0 and 0.0) and 1/n is computed from the integer n.
"""
import triton
import triton.language as tl

BLOCK = 4096


@triton.jit
def _difference(a_ptr, b_ptr, idx, mask, TARGET: tl.constexpr, HAS_B: tl.constexpr, acc_t: tl.constexpr):
    """a - b, or a - TARGET when there is no b, in the accumulation type."""
    a = tl.load(a_ptr + idx, mask=mask, other=0.0).to(acc_t)
    if HAS_B:
        return a - tl.load(b_ptr + idx, mask=mask, other=0.0).to(acc_t)
    return a - TARGET


@triton.jit
def _loss_fwd_kernel(a_ptr, b_ptr, partial_ptr, n, TARGET: tl.constexpr,
                     LOSS: tl.constexpr, HAS_B: tl.constexpr, ACC_FP64: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    acc_t = tl.float64 if ACC_FP64 else tl.float32
    idx = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < n
    d = _difference(a_ptr, b_ptr, idx, mask, TARGET, HAS_B, acc_t)
    if LOSS == 0:
        v = d * d
    else:
        v = tl.abs(d)
    tl.store(partial_ptr + pid, tl.sum(tl.where(mask, v, 0.0), axis=0))


@triton.jit
def _loss_bwd_kernel(a_ptr, b_ptr, grad_out_ptr, grad_a_ptr, grad_b_ptr, n, TARGET: tl.constexpr,
                     LOSS: tl.constexpr, HAS_B: tl.constexpr, WRITE_B: tl.constexpr,
                     ACC_FP64: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    acc_t = tl.float64 if ACC_FP64 else tl.float32
    idx = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < n
    d = _difference(a_ptr, b_ptr, idx, mask, TARGET, HAS_B, acc_t)
    scale = tl.load(grad_out_ptr).to(acc_t) / n
    if LOSS == 0:
        g = 2.0 * d * scale
    else:
        g = tl.where(d > 0, scale, tl.where(d < 0, -scale, 0.0))
    tl.store(grad_a_ptr + idx, g.to(grad_a_ptr.dtype.element_ty), mask=mask)
    if WRITE_B:
        tl.store(grad_b_ptr + idx, (-g).to(grad_b_ptr.dtype.element_ty), mask=mask)


def _identity(kernel):
    return kernel


def _grid(n: int):
    return (triton.cdiv(n, BLOCK),)


def loss_forward_partials(a, b, target: float, loss: int, partials, launch=_identity):
    """Per-block partial sums of (a - b)² / |a - b| (b=None: a - target) into `partials`."""
    import torch
    n = a.numel()
    launch(_loss_fwd_kernel)[_grid(n)](
        a, b if b is not None else a, partials, n, TARGET=float(target), LOSS=loss, HAS_B=b is not None,
        ACC_FP64=a.dtype == torch.float64, BLOCK=BLOCK, num_warps=8)


def loss_backward(a, b, target: float, loss: int, grad_out, grad_a, grad_b, launch=_identity):
    """grad_a (and grad_b = -grad_a when given) of the mean loss, scaled by the scalar grad_out."""
    import torch
    n = a.numel()
    launch(_loss_bwd_kernel)[_grid(n)](
        a, b if b is not None else a, grad_out, grad_a, grad_b if grad_b is not None else grad_a,
        n, TARGET=float(target), LOSS=loss, HAS_B=b is not None, WRITE_B=grad_b is not None,
        ACC_FP64=a.dtype == torch.float64, BLOCK=BLOCK, num_warps=8)


def num_partials(n: int) -> int:
    return triton.cdiv(n, BLOCK)
