"""Eager PyTorch versions of every fused op: the oracle for tests and benchmarks, and the fallback.

Each function follows the op contract in docs/ops.md. `upcast=True` computes in float32 for
half-precision inputs (and leaves float32/float64 alone) and casts the result back.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

ACTIVATIONS = ("relu", "leaky_relu", "none")


def check_activation(act: str, residual: Optional[torch.Tensor]) -> None:
    if act not in ACTIVATIONS:
        raise ValueError(f"act must be one of {ACTIVATIONS}, got {act!r}")
    if residual is not None and act != "none":
        raise ValueError("a residual is added after the norm: act must be 'none' with residual")


def _compute_dtype(x: torch.Tensor, upcast: bool) -> torch.dtype:
    if upcast and x.dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return x.dtype


def instance_norm_act(
    x: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    residual: Optional[torch.Tensor] = None,
    act: str = "relu",
    slope: float = 0.2,
    eps: float = 1e-5,
    upcast: bool = True,
) -> torch.Tensor:
    """y = act(IN(x) * w + b); with residual: y = residual + IN(x) * w + b.

    IN normalises each (n, c) plane over its spatial dims with the biased variance, as
    torch.nn.InstanceNorm2d(affine=..., track_running_stats=False).
    """
    check_activation(act, residual)
    if x.dim() < 3:
        raise ValueError(f"instance_norm_act needs (N, C, ...) input, got shape {tuple(x.shape)}")
    dtype = _compute_dtype(x, upcast)
    xc = x.to(dtype)
    dims = tuple(range(2, x.dim()))
    mean = xc.mean(dim=dims, keepdim=True)
    var = (xc - mean).square().mean(dim=dims, keepdim=True)  # two-pass, never E[x^2] - E[x]^2
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


def lsgan_loss(pred: torch.Tensor, target: float, upcast: bool = True) -> torch.Tensor:
    """Least-squares GAN loss: mean((pred - target)^2)."""
    p = pred.to(_compute_dtype(pred, upcast))
    return (p - target).square().mean().to(pred.dtype)


def l1_loss(a: torch.Tensor, b: torch.Tensor, upcast: bool = True) -> torch.Tensor:
    """mean(|a - b|); its gradient is sign(a - b)/n with sign(0) = 0, as torch's abs."""
    dtype = _compute_dtype(a, upcast)
    return (a.to(dtype) - b.to(dtype)).abs().mean().to(a.dtype)
