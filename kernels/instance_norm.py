"""Triton instance_norm_act: forward and backward, one program per (n, c) plane.

Contract: duiit_fast/ops/reference.py::instance_norm_act. Constexpr flags select the fusion
(HAS_WEIGHT, HAS_BIAS, HAS_RESIDUAL, ACT) so one kernel serves every layer of the models. The
ACT codes are duiit_fast.ops.instance_norm.ACT_CODES (none 0, relu 1, leaky_relu 2), as in csrc/. The
LeakyReLU slope and eps are constexprs too (the models use one value of each), which keeps them
exact in fp64 and leaves no float runtime argument: Inductor types those fp64 (see losses.py).
Statistics: two passes over the plane in BLOCK chunks (mean, then sum of squared deviations),
accumulated in fp32 — fp64 for fp64 inputs. A plane may be larger than a block (the loops) or a
single pixel. Bytes moved per element: forward reads x (and residual) and writes y; backward
reads x and dy twice and writes dx.

Large planes (more than SPLIT_MIN elements, e.g. 64 channels of 256²) are split across programs:
one program per plane re-reads a 256 KB plane from HBM for every pass and leaves too few programs
to fill the GPU. Split, each program takes a CHUNK of one plane: pass 1 writes the chunk's count,
mean and M2 (two-pass within the chunk, which stays in cache); pass 2 merges the plane's chunks in
order with Chan's formula (stable, deterministic; no atomics) and normalises its chunk. The
backward likewise writes per-chunk sums of g and g·xhat, then every chunk program adds its
plane's partial sums in order and writes dx.
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
def _scale_shift(w_ptr, b_ptr, c, rstd, HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, acc_t: tl.constexpr):
    """The affine of the normalisation for channel c: y = (x - mean)·scale + shift."""
    scale = rstd
    shift = 0.0
    if HAS_WEIGHT:
        scale = scale * tl.load(w_ptr + c).to(acc_t)
    if HAS_BIAS:
        shift = tl.load(b_ptr + c).to(acc_t)
    return scale, shift


@triton.jit
def _normalize_range(x_ptr, r_ptr, y_ptr, base, start0, end, mean, scale, shift, HAS_RESIDUAL: tl.constexpr,
                     ACT: tl.constexpr, SLOPE: tl.constexpr, acc_t: tl.constexpr, BLOCK: tl.constexpr):
    """y over elements [start0, end) of a plane: a whole plane, or one chunk of a split plane."""
    offs = tl.arange(0, BLOCK)
    for start in range(start0, end, BLOCK):
        idx = start + offs
        mask = idx < end
        # Subtract the mean before scaling: a folded x*scale + shift cancels on flat planes.
        z = (tl.load(x_ptr + base + idx, mask=mask, other=0.0).to(acc_t) - mean) * scale + shift
        if HAS_RESIDUAL:
            z += tl.load(r_ptr + base + idx, mask=mask, other=0.0).to(acc_t)
        else:
            z = _activate(z, ACT, SLOPE)
        tl.store(y_ptr + base + idx, z.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _in_act_fwd_kernel(x_ptr, w_ptr, b_ptr, r_ptr, y_ptr, mean_ptr, rstd_ptr,
                       C, L, EPS: tl.constexpr,
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
    rstd = 1.0 / tl.sqrt(tl.sum(sq, axis=0) / L + EPS)
    tl.store(mean_ptr + plane, mean)
    tl.store(rstd_ptr + plane, rstd)
    scale, shift = _scale_shift(w_ptr, b_ptr, plane % C, rstd, HAS_WEIGHT, HAS_BIAS, acc_t)
    _normalize_range(x_ptr, r_ptr, y_ptr, base, 0, L, mean, scale, shift, HAS_RESIDUAL, ACT, SLOPE, acc_t, BLOCK)


@triton.jit
def _xhat_and_grad(x_ptr, dy_ptr, offsets, mask, mean, rstd, w, b, ACT: tl.constexpr,
                   SLOPE: tl.constexpr, acc_t: tl.constexpr):
    """xhat and the upstream gradient through the activation, g = dy · act'(xhat·w + b): the
    activation mask is recomputed from x instead of stored."""
    xhat = (tl.load(x_ptr + offsets, mask=mask, other=0.0).to(acc_t) - mean) * rstd
    g = tl.load(dy_ptr + offsets, mask=mask, other=0.0).to(acc_t)
    return xhat, g * _activation_slope(xhat * w + b, ACT, SLOPE)


@triton.jit
def _dx_range(x_ptr, dy_ptr, dx_ptr, base, start0, end, mean, rstd, w, b, mean_g, mean_gx, ACT: tl.constexpr,
              SLOPE: tl.constexpr, acc_t: tl.constexpr, BLOCK: tl.constexpr):
    """dx = rstd·w·(g − mean(g) − xhat·mean(g·xhat)) over elements [start0, end) of a plane."""
    offs = tl.arange(0, BLOCK)
    k = rstd * w
    for start in range(start0, end, BLOCK):
        idx = start + offs
        mask = idx < end
        xhat, g = _xhat_and_grad(x_ptr, dy_ptr, base + idx, mask, mean, rstd, w, b, ACT, SLOPE, acc_t)
        dx = k * (g - mean_g - xhat * mean_gx)
        tl.store(dx_ptr + base + idx, dx.to(dx_ptr.dtype.element_ty), mask=mask)


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
    _dx_range(x_ptr, dy_ptr, dx_ptr, base, 0, L, mean, rstd, w, b, sum_g / L, sum_gx / L, ACT, SLOPE, acc_t, BLOCK)


@triton.jit
def _in_chunk_stats_kernel(x_ptr, cmean_ptr, cm2_ptr, L, CHUNK, SPLITS,
                           ACC_FP64: tl.constexpr, BLOCK: tl.constexpr):
    """Pass 1 of a split plane: mean and M2 (sum of squared deviations) of one chunk."""
    pid = tl.program_id(0)
    plane = pid // SPLITS
    start0 = (pid % SPLITS) * CHUNK
    end = tl.minimum(start0 + CHUNK, L)
    acc_t = tl.float64 if ACC_FP64 else tl.float32
    base = plane.to(tl.int64) * L
    offs = tl.arange(0, BLOCK)
    total = tl.zeros([BLOCK], acc_t)
    for start in range(start0, end, BLOCK):
        idx = start + offs
        total += tl.load(x_ptr + base + idx, mask=idx < end, other=0.0).to(acc_t)
    mean = tl.sum(total, axis=0) / (end - start0)
    sq = tl.zeros([BLOCK], acc_t)
    for start in range(start0, end, BLOCK):
        idx = start + offs
        d = tl.load(x_ptr + base + idx, mask=idx < end, other=0.0).to(acc_t) - mean
        sq += tl.where(idx < end, d * d, 0.0)
    tl.store(cmean_ptr + pid, mean)
    tl.store(cm2_ptr + pid, tl.sum(sq, axis=0))


@triton.jit
def _merged_plane_stats(cmean_ptr, cm2_ptr, plane, L, CHUNK, SPLITS, acc_t: tl.constexpr):
    """Chan et al.'s pairwise update over the plane's chunks, in chunk order: (mean, M2)."""
    first = plane * SPLITS
    n_a = tl.minimum(CHUNK, L).to(acc_t)
    mean = tl.load(cmean_ptr + first).to(acc_t)
    m2 = tl.load(cm2_ptr + first).to(acc_t)
    for s in range(1, SPLITS):
        n_b = (tl.minimum(CHUNK * (s + 1), L) - CHUNK * s).to(acc_t)
        mean_b = tl.load(cmean_ptr + first + s).to(acc_t)
        n = n_a + n_b
        delta = mean_b - mean
        mean = mean + delta * (n_b / n)
        m2 = m2 + tl.load(cm2_ptr + first + s).to(acc_t) + delta * delta * (n_a * n_b / n)
        n_a = n
    return mean, m2


@triton.jit
def _in_act_fwd_split_kernel(x_ptr, w_ptr, b_ptr, r_ptr, y_ptr, mean_ptr, rstd_ptr, cmean_ptr, cm2_ptr,
                             C, L, CHUNK, SPLITS, EPS: tl.constexpr,
                             HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
                             ACT: tl.constexpr, SLOPE: tl.constexpr, ACC_FP64: tl.constexpr,
                             BLOCK: tl.constexpr):
    """Pass 2 of a split plane: merge the plane's statistics, normalise (and activate) one chunk."""
    pid = tl.program_id(0)
    plane = pid // SPLITS
    split = pid % SPLITS
    start0 = split * CHUNK
    end = tl.minimum(start0 + CHUNK, L)
    acc_t = tl.float64 if ACC_FP64 else tl.float32
    mean, m2 = _merged_plane_stats(cmean_ptr, cm2_ptr, plane, L, CHUNK, SPLITS, acc_t)
    rstd = 1.0 / tl.sqrt(m2 / L + EPS)
    if split == 0:
        tl.store(mean_ptr + plane, mean)
        tl.store(rstd_ptr + plane, rstd)
    scale, shift = _scale_shift(w_ptr, b_ptr, plane % C, rstd, HAS_WEIGHT, HAS_BIAS, acc_t)
    _normalize_range(x_ptr, r_ptr, y_ptr, plane.to(tl.int64) * L, start0, end, mean, scale, shift, HAS_RESIDUAL,
                     ACT, SLOPE, acc_t, BLOCK)


@triton.jit
def _in_act_bwd_chunk_sums_kernel(dy_ptr, x_ptr, mean_ptr, rstd_ptr, w_ptr, b_ptr, csg_ptr, csgx_ptr,
                                  C, L, CHUNK, SPLITS,
                                  HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
                                  SLOPE: tl.constexpr, ACC_FP64: tl.constexpr, BLOCK: tl.constexpr):
    """Backward pass 1 of a split plane: one chunk's sums of g and g·xhat."""
    pid = tl.program_id(0)
    plane = pid // SPLITS
    start0 = (pid % SPLITS) * CHUNK
    end = tl.minimum(start0 + CHUNK, L)
    acc_t = tl.float64 if ACC_FP64 else tl.float32
    mean = tl.load(mean_ptr + plane).to(acc_t)
    rstd = tl.load(rstd_ptr + plane).to(acc_t)
    c = plane % C
    w = tl.load(w_ptr + c).to(acc_t) if HAS_WEIGHT else 1.0
    b = tl.load(b_ptr + c).to(acc_t) if HAS_BIAS else 0.0
    base = plane.to(tl.int64) * L
    offs = tl.arange(0, BLOCK)
    sg = tl.zeros([BLOCK], acc_t)
    sgx = tl.zeros([BLOCK], acc_t)
    for start in range(start0, end, BLOCK):
        idx = start + offs
        xhat, g = _xhat_and_grad(x_ptr, dy_ptr, base + idx, idx < end, mean, rstd, w, b, ACT, SLOPE, acc_t)
        sg += g
        sgx += g * xhat
    tl.store(csg_ptr + pid, tl.sum(sg, axis=0))
    tl.store(csgx_ptr + pid, tl.sum(sgx, axis=0))


@triton.jit
def _in_act_bwd_split_kernel(dy_ptr, x_ptr, mean_ptr, rstd_ptr, w_ptr, b_ptr, dx_ptr, csg_ptr, csgx_ptr,
                             sum_g_ptr, sum_gx_ptr, C, L, CHUNK, SPLITS,
                             HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
                             SLOPE: tl.constexpr, ACC_FP64: tl.constexpr, BLOCK: tl.constexpr):
    """Backward pass 2 of a split plane: the plane's sums (added in chunk order), dx of one chunk."""
    pid = tl.program_id(0)
    plane = pid // SPLITS
    split = pid % SPLITS
    start0 = split * CHUNK
    end = tl.minimum(start0 + CHUNK, L)
    acc_t = tl.float64 if ACC_FP64 else tl.float32
    sum_g = tl.load(csg_ptr + plane * SPLITS).to(acc_t)
    sum_gx = tl.load(csgx_ptr + plane * SPLITS).to(acc_t)
    for s in range(1, SPLITS):
        sum_g += tl.load(csg_ptr + plane * SPLITS + s).to(acc_t)
        sum_gx += tl.load(csgx_ptr + plane * SPLITS + s).to(acc_t)
    if split == 0:
        tl.store(sum_g_ptr + plane, sum_g)
        tl.store(sum_gx_ptr + plane, sum_gx)
    mean = tl.load(mean_ptr + plane).to(acc_t)
    rstd = tl.load(rstd_ptr + plane).to(acc_t)
    c = plane % C
    w = tl.load(w_ptr + c).to(acc_t) if HAS_WEIGHT else 1.0
    b = tl.load(b_ptr + c).to(acc_t) if HAS_BIAS else 0.0
    _dx_range(x_ptr, dy_ptr, dx_ptr, plane.to(tl.int64) * L, start0, end, mean, rstd, w, b, sum_g / L, sum_gx / L,
              ACT, SLOPE, acc_t, BLOCK)


# Planes above SPLIT_MIN elements are split into chunks of CHUNK elements (32 KB of fp32: a chunk's
# second read in pass 1 hits the cache).
SPLIT_MIN = 16384
CHUNK = 8192


def plane_split(length: int, chunk=None) -> tuple[int, int]:
    """(chunk, splits) for a plane of `length` elements: (length, 1) = one program per plane.
    `chunk` forces a split (tests use tiny chunks so the interpreter covers the split path)."""
    if chunk is None:
        if length <= SPLIT_MIN:
            return length, 1
        chunk = CHUNK
    chunk = max(1, min(chunk, length))
    return chunk, triton.cdiv(length, chunk)


def _block(length: int) -> int:
    return max(16, min(4096, triton.next_power_of_2(length)))


def _warps(block: int) -> int:
    return 8 if block >= 2048 else 4


def _identity(kernel):
    return kernel


def instance_norm_act_forward(x, weight, bias, residual, act: int, slope: float, eps: float,
                              y, mean, rstd, launch=_identity, chunk=None):
    """Launch the forward on contiguous NCHW x; writes y, mean (N·C), rstd (N·C) in place.

    `launch` wraps the kernel (torch.library.wrap_triton inside a triton_op, so torch.compile can
    see the kernel; the identity elsewhere). Large planes take the split path (plane_split)."""
    n, c = x.shape[:2]
    length = x.numel() // (n * c)
    chunk, splits = plane_split(length, chunk)
    dummy = x  # never read when the matching HAS_* flag is off
    flags = dict(HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, HAS_RESIDUAL=residual is not None,
                 ACT=act, SLOPE=slope, ACC_FP64=x.dtype == _fp64())
    w, b, r = (t if t is not None else dummy for t in (weight, bias, residual))
    if splits == 1:
        block = _block(length)
        launch(_in_act_fwd_kernel)[(n * c,)](x, w, b, r, y, mean, rstd, c, length, EPS=eps, **flags,
                                             BLOCK=block, num_warps=_warps(block))
        return
    block = _block(chunk)
    cmean, cm2 = mean.new_empty(n * c * splits), mean.new_empty(n * c * splits)
    launch(_in_chunk_stats_kernel)[(n * c * splits,)](x, cmean, cm2, length, chunk, splits,
                                                      ACC_FP64=flags["ACC_FP64"], BLOCK=block,
                                                      num_warps=_warps(block))
    launch(_in_act_fwd_split_kernel)[(n * c * splits,)](x, w, b, r, y, mean, rstd, cmean, cm2, c, length, chunk,
                                                        splits, EPS=eps, **flags, BLOCK=block,
                                                        num_warps=_warps(block))


def instance_norm_act_backward(grad_y, x, mean, rstd, weight, bias, act: int, slope: float,
                               grad_x, sum_g, sum_gx, launch=_identity, chunk=None):
    """Launch the backward; writes grad_x and per-plane sums of g and g·xhat (N·C each)."""
    n, c = x.shape[:2]
    length = x.numel() // (n * c)
    chunk, splits = plane_split(length, chunk)
    w, b = (t if t is not None else x for t in (weight, bias))
    flags = dict(HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, ACT=act, SLOPE=slope,
                 ACC_FP64=x.dtype == _fp64())
    if splits == 1:
        block = _block(length)
        launch(_in_act_bwd_kernel)[(n * c,)](grad_y, x, mean, rstd, w, b, grad_x, sum_g, sum_gx, c, length,
                                             **flags, BLOCK=block, num_warps=_warps(block))
        return
    block = _block(chunk)
    csg, csgx = sum_g.new_empty(n * c * splits), sum_g.new_empty(n * c * splits)
    launch(_in_act_bwd_chunk_sums_kernel)[(n * c * splits,)](grad_y, x, mean, rstd, w, b, csg, csgx, c, length,
                                                             chunk, splits, **flags, BLOCK=block,
                                                             num_warps=_warps(block))
    launch(_in_act_bwd_split_kernel)[(n * c * splits,)](grad_y, x, mean, rstd, w, b, grad_x, csg, csgx, sum_g,
                                                        sum_gx, c, length, chunk, splits, **flags, BLOCK=block,
                                                        num_warps=_warps(block))


def _fp64():
    import torch
    return torch.float64
