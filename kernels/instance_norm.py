"""Triton instance_norm_act: forward and backward, one program per (n, c) plane.

Contract: duiit_fast/reference.py::instance_norm_act. Constexpr flags select the fusion
(HAS_WEIGHT, HAS_BIAS, HAS_RESIDUAL, ACT) so one kernel serves every layer of the models. The
ACT codes are duiit_fast._cpp_ops.ACT_CODES (none 0, relu 1, leaky_relu 2), as in csrc/. The
LeakyReLU slope is a constexpr too (the models use one value, 0.2), which keeps it exact in fp64.
Statistics: two passes over the plane in BLOCK chunks (mean, then sum of squared deviations),
accumulated in fp32 — fp64 for fp64 inputs. A plane may be larger than a block (the loops) or a
single pixel. Bytes moved per element: forward reads x (and residual) and writes y; backward
reads x and dy twice and writes dx.
"""
import triton
import triton.language as tl


@triton.jit
def _activate(z, ACT: tl.constexpr, SLOPE: tl.constexpr):
    if ACT == 1:
        z = tl.where(z > 0, z, 0.0)
    elif ACT == 2:
        z = tl.where(z > 0, z, z * SLOPE)
    return z


@triton.jit
def _activation_slope(z, ACT: tl.constexpr, SLOPE: tl.constexpr):
    # d act / dz with the value at 0 taken as torch does: 0 for ReLU, slope for LeakyReLU.
    # Both branches are built in z's dtype: tl.where on two Python scalars would round to fp32.
    one = tl.full(z.shape, 1.0, z.dtype)
    if ACT == 1:
        d = tl.where(z > 0, one, tl.zeros(z.shape, z.dtype))
    elif ACT == 2:
        d = tl.where(z > 0, one, tl.full(z.shape, SLOPE, z.dtype))
    else:
        d = one
    return d


@triton.jit
def _in_act_fwd_kernel(x_ptr, w_ptr, b_ptr, r_ptr, y_ptr, mean_ptr, rstd_ptr,
                       C, L, eps,
                       HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
                       ACT: tl.constexpr, SLOPE: tl.constexpr, ACC_FP64: tl.constexpr,
                       BLOCK: tl.constexpr):
    plane = tl.program_id(0)
    acc_t = tl.float64 if ACC_FP64 else tl.float32
    base = plane.to(tl.int64) * L
    offs = tl.arange(0, BLOCK)
    total = tl.zeros([BLOCK], acc_t)
    for start in range(0, L, BLOCK):
        idx = start + offs
        total += tl.load(x_ptr + base + idx, mask=idx < L, other=0.0).to(acc_t)
    mean = tl.sum(total, axis=0) / L
    sq = tl.zeros([BLOCK], acc_t)
    for start in range(0, L, BLOCK):
        idx = start + offs
        d = tl.load(x_ptr + base + idx, mask=idx < L, other=0.0).to(acc_t) - mean
        sq += tl.where(idx < L, d * d, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(sq, axis=0) / L + eps)
    tl.store(mean_ptr + plane, mean)
    tl.store(rstd_ptr + plane, rstd)
    c = plane % C
    scale = rstd
    shift = 0.0
    if HAS_WEIGHT:
        scale = scale * tl.load(w_ptr + c).to(acc_t)
    if HAS_BIAS:
        shift = tl.load(b_ptr + c).to(acc_t)
    for start in range(0, L, BLOCK):
        idx = start + offs
        mask = idx < L
        # Subtract the mean before scaling: a folded x*scale + shift cancels on flat planes.
        z = (tl.load(x_ptr + base + idx, mask=mask, other=0.0).to(acc_t) - mean) * scale + shift
        if HAS_RESIDUAL:
            z += tl.load(r_ptr + base + idx, mask=mask, other=0.0).to(acc_t)
        else:
            z = _activate(z, ACT, SLOPE)
        tl.store(y_ptr + base + idx, z.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _xhat_and_grad(x_ptr, dy_ptr, offsets, mask, mean, rstd, w, b, ACT: tl.constexpr,
                   SLOPE: tl.constexpr, acc_t: tl.constexpr):
    """xhat and the upstream gradient through the activation, g = dy · act'(xhat·w + b): the
    activation mask is recomputed from x instead of stored."""
    xhat = (tl.load(x_ptr + offsets, mask=mask, other=0.0).to(acc_t) - mean) * rstd
    g = tl.load(dy_ptr + offsets, mask=mask, other=0.0).to(acc_t)
    return xhat, g * _activation_slope(xhat * w + b, ACT, SLOPE)


@triton.jit
def _in_act_bwd_kernel(dy_ptr, x_ptr, mean_ptr, rstd_ptr, w_ptr, b_ptr, dx_ptr,
                       sum_g_ptr, sum_gx_ptr, C, L,
                       HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
                       SLOPE: tl.constexpr, ACC_FP64: tl.constexpr, BLOCK: tl.constexpr):
    plane = tl.program_id(0)
    acc_t = tl.float64 if ACC_FP64 else tl.float32
    base = plane.to(tl.int64) * L
    offs = tl.arange(0, BLOCK)
    mean = tl.load(mean_ptr + plane).to(acc_t)
    rstd = tl.load(rstd_ptr + plane).to(acc_t)
    c = plane % C
    w = tl.load(w_ptr + c).to(acc_t) if HAS_WEIGHT else 1.0
    b = tl.load(b_ptr + c).to(acc_t) if HAS_BIAS else 0.0
    sg = tl.zeros([BLOCK], acc_t)
    sgx = tl.zeros([BLOCK], acc_t)
    for start in range(0, L, BLOCK):
        idx = start + offs
        mask = idx < L
        xhat, g = _xhat_and_grad(x_ptr, dy_ptr, base + idx, mask, mean, rstd, w, b, ACT, SLOPE, acc_t)
        sg += g
        sgx += g * xhat
    sum_g = tl.sum(sg, axis=0)
    sum_gx = tl.sum(sgx, axis=0)
    # Per-plane partial sums: the host reduces them over the batch into dweight and dbias.
    tl.store(sum_g_ptr + plane, sum_g)
    tl.store(sum_gx_ptr + plane, sum_gx)
    mean_g = sum_g / L
    mean_gx = sum_gx / L
    k = rstd * w
    for start in range(0, L, BLOCK):
        idx = start + offs
        mask = idx < L
        xhat, g = _xhat_and_grad(x_ptr, dy_ptr, base + idx, mask, mean, rstd, w, b, ACT, SLOPE, acc_t)
        dx = k * (g - mean_g - xhat * mean_gx)
        tl.store(dx_ptr + base + idx, dx.to(dx_ptr.dtype.element_ty), mask=mask)


def _block(length: int) -> int:
    return max(16, min(4096, triton.next_power_of_2(length)))


def _warps(block: int) -> int:
    return 8 if block >= 2048 else 4


def _identity(kernel):
    return kernel


def instance_norm_act_forward(x, weight, bias, residual, act: int, slope: float, eps: float,
                              y, mean, rstd, launch=_identity):
    """Launch the forward on contiguous NCHW x; writes y, mean (N·C), rstd (N·C) in place.

    `launch` wraps the kernel (torch.library.wrap_triton inside a triton_op, so torch.compile can
    see the kernel; the identity elsewhere)."""
    n, c = x.shape[:2]
    length = x.numel() // (n * c)
    block = _block(length)
    dummy = x  # never read when the matching HAS_* flag is off
    launch(_in_act_fwd_kernel)[(n * c,)](
        x, weight if weight is not None else dummy, bias if bias is not None else dummy,
        residual if residual is not None else dummy, y, mean, rstd, c, length, eps,
        HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, HAS_RESIDUAL=residual is not None,
        ACT=act, SLOPE=slope, ACC_FP64=x.dtype == _fp64(), BLOCK=block, num_warps=_warps(block))


def instance_norm_act_backward(grad_y, x, mean, rstd, weight, bias, act: int, slope: float,
                               grad_x, sum_g, sum_gx, launch=_identity):
    """Launch the backward; writes grad_x and per-plane sums of g and g·xhat (N·C each)."""
    n, c = x.shape[:2]
    length = x.numel() // (n * c)
    block = _block(length)
    launch(_in_act_bwd_kernel)[(n * c,)](
        grad_y, x, mean, rstd, weight if weight is not None else x, bias if bias is not None else x,
        grad_x, sum_g, sum_gx, c, length,
        HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, ACT=act, SLOPE=slope,
        ACC_FP64=x.dtype == _fp64(), BLOCK=block, num_warps=_warps(block))


def _fp64():
    import torch
    return torch.float64
