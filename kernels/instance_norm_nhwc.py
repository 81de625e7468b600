"""Triton instance_norm_act for channels_last (NHWC) tensors: forward and backward.

Contract, codes and constexprs as instance_norm.py (the NCHW kernels). In NHWC a (n, c) plane is
strided by C, so one program per plane would read scattered scalars. Here a program owns a tile of
BLOCK_C neighbouring channels of one image and a chunk of its pixels (rows of the (H·W, C) matrix):
every load is a contiguous run of channels. Without these kernels a channels_last activation was
copied to NCHW before the kernel and the output back to channels_last by the next convolution.

Every plane is cut into SPLITS chunks of ROWS pixels, so the GPU gets N·ceil(C/BLOCK_C)·SPLITS
programs even for 64-channel images. Three launches per direction:
  forward:  per-chunk mean and M2 of each channel → per-plane merge → normalise (+ act | + residual)
  backward: per-chunk sums of g and g·xhat        → per-plane sums  → dx
A chunk's mean and M2 are computed in one read, on data shifted by the chunk's first pixel (the
shifted-data algorithm: no cancellation while the spread is not far below the shift's distance to
the mean). The merge combines the chunks exactly and in a fixed order: mean = Σ nᵢ·meanᵢ / n,
M2 = Σ M2ᵢ + Σ nᵢ·(meanᵢ − mean)² (Chan et al.), over all chunks at once as one tile.
"""
import triton
import triton.language as tl

from .instance_norm import _activate, _activation_slope

MAX_SPLITS = 128          # the merge loads all of a plane's chunks as one (MAX_SPLITS, BLOCK_C) tile
TARGET_PROGRAMS = 1024    # enough programs to fill an H100's 132 SMs several times over
TILE = 4096               # elements of x per loop iteration of one program


@triton.jit
def _tile_coords(pid, C, L, ROWS, SPLITS, CBLOCKS, BLOCK_C: tl.constexpr):
    """(n, channel offsets, channel mask, first pixel, end pixel, image base) of program pid."""
    split = pid % SPLITS
    cb = (pid // SPLITS) % CBLOCKS
    n = pid // (SPLITS * CBLOCKS)
    ch = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    p0 = split * ROWS
    return n, split, ch, ch < C, p0, tl.minimum(p0 + ROWS, L), n.to(tl.int64) * L * C


@triton.jit
def _row_offsets(base, rows, ch, cmask, C, end):
    """Offsets and mask of a (rows × channels) tile. No pointer goes in: torch.compile's mutation
    analysis treats whatever a helper returns as derived from every argument, so a store through
    offsets returned by a helper that took x_ptr would mark x as written (and Inductor would copy x
    before every launch)."""
    mask = (rows < end)[:, None] & cmask[None, :]
    return base + rows[:, None].to(tl.int64) * C + ch[None, :], mask


@triton.jit
def _nhwc_chunk_stats_kernel(x_ptr, cmean_ptr, cm2_ptr, C, L, ROWS, SPLITS, CBLOCKS,
                             ACC_FP64: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    acc_t = tl.float64 if ACC_FP64 else tl.float32
    n, split, ch, cmask, p0, p1, base = _tile_coords(tl.program_id(0), C, L, ROWS, SPLITS, CBLOCKS, BLOCK_C)
    shift = tl.load(x_ptr + base + p0.to(tl.int64) * C + ch, mask=cmask, other=0.0).to(acc_t)
    s1 = tl.zeros([BLOCK_P, BLOCK_C], acc_t)
    s2 = tl.zeros([BLOCK_P, BLOCK_C], acc_t)
    for start in range(p0, p1, BLOCK_P):
        offs, mask = _row_offsets(base, start + tl.arange(0, BLOCK_P), ch, cmask, C, p1)
        d = tl.where(mask, tl.load(x_ptr + offs, mask=mask, other=0.0).to(acc_t) - shift[None, :], 0.0)
        s1 += d
        s2 += d * d
    count = (p1 - p0).to(acc_t)
    t1 = tl.sum(s1, axis=0)
    m2 = tl.maximum(tl.sum(s2, axis=0) - t1 * t1 / count, 0.0)
    out = (n * SPLITS + split) * C + ch                      # partials laid out (N, SPLITS, C)
    tl.store(cmean_ptr + out, shift + t1 / count, mask=cmask)
    tl.store(cm2_ptr + out, m2, mask=cmask)


@triton.jit
def _chunk_partials_tile(pid, C, SPLITS, CBLOCKS, BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr):
    """For a per-plane reduction program: (n, channels, channel mask, chunk index, offsets and mask
    of the (chunks × channels) tile of partials laid out (N, SPLITS, C))."""
    n = pid // CBLOCKS
    ch = (pid % CBLOCKS) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = ch < C
    s = tl.arange(0, BLOCK_S)
    return n, ch, cmask, s, (n * SPLITS + s[:, None]) * C + ch[None, :], (s < SPLITS)[:, None] & cmask[None, :]


@triton.jit
def _nhwc_merge_stats_kernel(cmean_ptr, cm2_ptr, mean_ptr, rstd_ptr, C, L, ROWS, SPLITS, CBLOCKS,
                             EPS: tl.constexpr, ACC_FP64: tl.constexpr, BLOCK_S: tl.constexpr,
                             BLOCK_C: tl.constexpr):
    """One program per (image, channel block): the plane statistics from all its chunks."""
    acc_t = tl.float64 if ACC_FP64 else tl.float32
    n, ch, cmask, s, offs, smask = _chunk_partials_tile(tl.program_id(0), C, SPLITS, CBLOCKS, BLOCK_S, BLOCK_C)
    counts = (tl.minimum(s * ROWS + ROWS, L) - s * ROWS).to(acc_t)[:, None]
    cmean = tl.load(cmean_ptr + offs, mask=smask, other=0.0).to(acc_t)
    mean = tl.sum(tl.where(smask, counts * cmean, 0.0), axis=0) / L
    dev = cmean - mean[None, :]
    m2 = tl.sum(tl.where(smask, tl.load(cm2_ptr + offs, mask=smask, other=0.0).to(acc_t) + counts * dev * dev, 0.0),
                axis=0)
    tl.store(mean_ptr + n * C + ch, mean, mask=cmask)
    tl.store(rstd_ptr + n * C + ch, 1.0 / tl.sqrt(m2 / L + EPS), mask=cmask)


@triton.jit
def _channel_params(w_ptr, b_ptr, ch, cmask, HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr,
                    acc_t: tl.constexpr, BLOCK_C: tl.constexpr):
    w = tl.load(w_ptr + ch, mask=cmask, other=0.0).to(acc_t) if HAS_WEIGHT else tl.full([BLOCK_C], 1.0, acc_t)
    b = tl.load(b_ptr + ch, mask=cmask, other=0.0).to(acc_t) if HAS_BIAS else tl.zeros([BLOCK_C], acc_t)
    return w, b


@triton.jit
def _plane_stats(mean_ptr, rstd_ptr, n, C, ch, cmask, acc_t: tl.constexpr):
    """Saved mean and rstd of image n's planes in the channel block (values, never addresses)."""
    return (tl.load(mean_ptr + n * C + ch, mask=cmask, other=0.0).to(acc_t),
            tl.load(rstd_ptr + n * C + ch, mask=cmask, other=0.0).to(acc_t))


@triton.jit
def _nhwc_fwd_kernel(x_ptr, w_ptr, b_ptr, r_ptr, y_ptr, mean_ptr, rstd_ptr, C, L, ROWS, SPLITS, CBLOCKS,
                     HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
                     ACT: tl.constexpr, SLOPE: tl.constexpr, ACC_FP64: tl.constexpr,
                     BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    acc_t = tl.float64 if ACC_FP64 else tl.float32
    n, split, ch, cmask, p0, p1, base = _tile_coords(tl.program_id(0), C, L, ROWS, SPLITS, CBLOCKS, BLOCK_C)
    mean, rstd = _plane_stats(mean_ptr, rstd_ptr, n, C, ch, cmask, acc_t)
    w, shift = _channel_params(w_ptr, b_ptr, ch, cmask, HAS_WEIGHT, HAS_BIAS, acc_t, BLOCK_C)
    scale = rstd * w
    for start in range(p0, p1, BLOCK_P):
        offs, mask = _row_offsets(base, start + tl.arange(0, BLOCK_P), ch, cmask, C, p1)
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(acc_t)
        # Subtract the mean before scaling, as the NCHW kernels: a folded x*scale + shift cancels.
        z = (x - mean[None, :]) * scale[None, :] + shift[None, :]
        if HAS_RESIDUAL:
            z += tl.load(r_ptr + offs, mask=mask, other=0.0).to(acc_t)
        else:
            z = _activate(z, ACT, SLOPE)
        tl.store(y_ptr + offs, z.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _nhwc_xhat_and_grad(x_ptr, dy_ptr, offs, mask, mean, rstd, w, b, ACT: tl.constexpr, SLOPE: tl.constexpr,
                        acc_t: tl.constexpr):
    xhat = (tl.load(x_ptr + offs, mask=mask, other=0.0).to(acc_t) - mean[None, :]) * rstd[None, :]
    g = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(acc_t)   # 0 where masked: adds nothing
    return xhat, g * _activation_slope(xhat * w[None, :] + b[None, :], ACT, SLOPE)


@triton.jit
def _nhwc_bwd_chunk_sums_kernel(dy_ptr, x_ptr, mean_ptr, rstd_ptr, w_ptr, b_ptr, csg_ptr, csgx_ptr,
                                C, L, ROWS, SPLITS, CBLOCKS,
                                HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
                                SLOPE: tl.constexpr, ACC_FP64: tl.constexpr,
                                BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    acc_t = tl.float64 if ACC_FP64 else tl.float32
    n, split, ch, cmask, p0, p1, base = _tile_coords(tl.program_id(0), C, L, ROWS, SPLITS, CBLOCKS, BLOCK_C)
    mean, rstd = _plane_stats(mean_ptr, rstd_ptr, n, C, ch, cmask, acc_t)
    w, b = _channel_params(w_ptr, b_ptr, ch, cmask, HAS_WEIGHT, HAS_BIAS, acc_t, BLOCK_C)
    sg = tl.zeros([BLOCK_P, BLOCK_C], acc_t)
    sgx = tl.zeros([BLOCK_P, BLOCK_C], acc_t)
    for start in range(p0, p1, BLOCK_P):
        offs, mask = _row_offsets(base, start + tl.arange(0, BLOCK_P), ch, cmask, C, p1)
        xhat, g = _nhwc_xhat_and_grad(x_ptr, dy_ptr, offs, mask, mean, rstd, w, b, ACT, SLOPE, acc_t)
        sg += g
        sgx += g * xhat
    out = (n * SPLITS + split) * C + ch
    tl.store(csg_ptr + out, tl.sum(sg, axis=0), mask=cmask)
    tl.store(csgx_ptr + out, tl.sum(sgx, axis=0), mask=cmask)


@triton.jit
def _nhwc_plane_sums_kernel(csg_ptr, csgx_ptr, sum_g_ptr, sum_gx_ptr, C, SPLITS, CBLOCKS,
                            ACC_FP64: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr):
    """One program per (image, channel block): a plane's sums over its chunks (a fixed-order tree)."""
    acc_t = tl.float64 if ACC_FP64 else tl.float32
    n, ch, cmask, s, offs, smask = _chunk_partials_tile(tl.program_id(0), C, SPLITS, CBLOCKS, BLOCK_S, BLOCK_C)
    tl.store(sum_g_ptr + n * C + ch, tl.sum(tl.load(csg_ptr + offs, mask=smask, other=0.0).to(acc_t), axis=0),
             mask=cmask)
    tl.store(sum_gx_ptr + n * C + ch, tl.sum(tl.load(csgx_ptr + offs, mask=smask, other=0.0).to(acc_t), axis=0),
             mask=cmask)


@triton.jit
def _nhwc_bwd_dx_kernel(dy_ptr, x_ptr, mean_ptr, rstd_ptr, w_ptr, b_ptr, dx_ptr, sum_g_ptr, sum_gx_ptr,
                        C, L, ROWS, SPLITS, CBLOCKS,
                        HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
                        SLOPE: tl.constexpr, ACC_FP64: tl.constexpr,
                        BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """dx = rstd·w·(g − mean(g) − xhat·mean(g·xhat)) over one chunk."""
    acc_t = tl.float64 if ACC_FP64 else tl.float32
    n, split, ch, cmask, p0, p1, base = _tile_coords(tl.program_id(0), C, L, ROWS, SPLITS, CBLOCKS, BLOCK_C)
    mean, rstd = _plane_stats(mean_ptr, rstd_ptr, n, C, ch, cmask, acc_t)
    w, b = _channel_params(w_ptr, b_ptr, ch, cmask, HAS_WEIGHT, HAS_BIAS, acc_t, BLOCK_C)
    mean_g = tl.load(sum_g_ptr + n * C + ch, mask=cmask, other=0.0).to(acc_t) / L
    mean_gx = tl.load(sum_gx_ptr + n * C + ch, mask=cmask, other=0.0).to(acc_t) / L
    k = rstd * w
    for start in range(p0, p1, BLOCK_P):
        offs, mask = _row_offsets(base, start + tl.arange(0, BLOCK_P), ch, cmask, C, p1)
        xhat, g = _nhwc_xhat_and_grad(x_ptr, dy_ptr, offs, mask, mean, rstd, w, b, ACT, SLOPE, acc_t)
        dx = k[None, :] * (g - mean_g[None, :] - xhat * mean_gx[None, :])
        tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)


def nhwc_plan(n: int, c: int, length: int, rows=None) -> dict:
    """Tiling of an (n, c, H·W = length) channels_last tensor. `rows` forces the chunk length
    (tests cover several chunks at interpreter sizes)."""
    block_c = min(64, triton.next_power_of_2(c))
    cblocks = triton.cdiv(c, block_c)
    if rows is None:
        splits = min(MAX_SPLITS, max(1, triton.cdiv(TARGET_PROGRAMS, n * cblocks)))
        rows = max(triton.cdiv(length, splits), TILE // block_c)   # at least one full tile per program
    rows = max(1, min(rows, length))
    splits = triton.cdiv(length, rows)
    if splits > MAX_SPLITS:
        raise ValueError(f"{splits} chunks per plane: at most {MAX_SPLITS}")
    block_p = max(2, min(TILE // block_c, triton.next_power_of_2(rows)))
    return dict(block_c=block_c, cblocks=cblocks, rows=rows, splits=splits, block_p=block_p,
                block_s=max(2, triton.next_power_of_2(splits)))


def _warps(plan) -> int:
    return 8 if plan["block_p"] * plan["block_c"] >= 2048 else 4


def _merge_warps(plan) -> int:
    return 8 if plan["block_s"] * plan["block_c"] >= 4096 else 4


def _identity(kernel):
    return kernel


def instance_norm_act_forward(x, weight, bias, residual, act: int, slope: float, eps: float,
                              y, mean, rstd, launch=_identity, rows=None):
    """Launch the forward on channels_last x (and residual, y alike); mean, rstd are (N, C)."""
    n, c = x.shape[:2]
    length = x.numel() // (n * c)
    plan = nhwc_plan(n, c, length, rows)
    fp64 = x.dtype == _fp64()
    grid = (n * plan["cblocks"] * plan["splits"],)
    dims = (c, length, plan["rows"], plan["splits"], plan["cblocks"])
    cmean = mean.new_empty(n * plan["splits"] * c)
    cm2 = mean.new_empty(n * plan["splits"] * c)
    launch(_nhwc_chunk_stats_kernel)[grid](x, cmean, cm2, *dims, ACC_FP64=fp64, BLOCK_P=plan["block_p"],
                                           BLOCK_C=plan["block_c"], num_warps=_warps(plan))
    launch(_nhwc_merge_stats_kernel)[(n * plan["cblocks"],)](cmean, cm2, mean, rstd, *dims, EPS=eps, ACC_FP64=fp64,
                                                             BLOCK_S=plan["block_s"], BLOCK_C=plan["block_c"],
                                                             num_warps=_merge_warps(plan))
    w, b, r = (t if t is not None else x for t in (weight, bias, residual))  # unread when its flag is off
    launch(_nhwc_fwd_kernel)[grid](x, w, b, r, y, mean, rstd, *dims, HAS_WEIGHT=weight is not None,
                                   HAS_BIAS=bias is not None, HAS_RESIDUAL=residual is not None, ACT=act,
                                   SLOPE=slope, ACC_FP64=fp64, BLOCK_P=plan["block_p"], BLOCK_C=plan["block_c"],
                                   num_warps=_warps(plan))


def instance_norm_act_backward(grad_y, x, mean, rstd, weight, bias, act: int, slope: float,
                               grad_x, sum_g, sum_gx, launch=_identity, rows=None):
    """Launch the backward on channels_last x and grad_y; writes grad_x and (N, C) sums of g, g·xhat."""
    n, c = x.shape[:2]
    length = x.numel() // (n * c)
    plan = nhwc_plan(n, c, length, rows)
    fp64 = x.dtype == _fp64()
    grid = (n * plan["cblocks"] * plan["splits"],)
    dims = (c, length, plan["rows"], plan["splits"], plan["cblocks"])
    flags = dict(HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, ACT=act, SLOPE=slope, ACC_FP64=fp64,
                 BLOCK_P=plan["block_p"], BLOCK_C=plan["block_c"], num_warps=_warps(plan))
    w, b = (t if t is not None else x for t in (weight, bias))
    csg = sum_g.new_empty(n * plan["splits"] * c)
    csgx = sum_g.new_empty(n * plan["splits"] * c)
    launch(_nhwc_bwd_chunk_sums_kernel)[grid](grad_y, x, mean, rstd, w, b, csg, csgx, *dims, **flags)
    launch(_nhwc_plane_sums_kernel)[(n * plan["cblocks"],)](csg, csgx, sum_g, sum_gx, c, plan["splits"],
                                                            plan["cblocks"], ACC_FP64=fp64, BLOCK_S=plan["block_s"],
                                                            BLOCK_C=plan["block_c"], num_warps=_merge_warps(plan))
    launch(_nhwc_bwd_dx_kernel)[grid](grad_y, x, mean, rstd, w, b, grad_x, sum_g, sum_gx, *dims, **flags)


def _fp64():
    import torch
    return torch.float64
