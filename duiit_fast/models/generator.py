"""CycleGAN's generators (Zhu et al. 2017), layer for layer, with fused norm+activation: the ResNet
generator (the paper's) and the U-Net of pix2pix (Isola et al. 2017; CycleGAN's `unet_*` option)."""
from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn import functional as F

from .layers import InstanceNormAct, init_weights_normal


# Under torch.compile every residual block of G and F can be one nested compile region: Inductor
# compiles the block once and calls it at each use instead of unrolling all of them, which cut the
# cold compile of the joint step at M by a third on 2 cores (bench/RESULTS.md). Off unless a
# compiled run switches it on (train/fast.py, with the Inductor setting it needs to be right);
# read as a global by traced code, so torch.compile guards on it. Eager, it changes nothing.
_blocks_as_regions = False
_nested_compile_region = getattr(torch.compiler, "nested_compile_region", None)   # torch >= 2.8


def regions_supported() -> bool:
    return _nested_compile_region is not None


@contextlib.contextmanager
def residual_blocks_as_regions(on: bool):
    """Inside this block, a compiled ResnetBlock is a nested compile region (if `on`)."""
    global _blocks_as_regions
    saved, _blocks_as_regions = _blocks_as_regions, on and regions_supported()
    try:
        yield
    finally:
        _blocks_as_regions = saved


def reflect_pad_1(x: torch.Tensor) -> torch.Tensor:
    """ReflectionPad2d(1) as concatenated edge slices: the same values, and plain copies. Inside a
    nested compile region Inductor lowers the reflection pad's index arithmetic (iota, abs) to a
    gather it does not vectorise: 2.8 ms a call at M in bf16, ~10x the same pad in an unrolled
    graph, which made the regions' step slower than the unrolled one (bench/RESULTS.md)."""
    x = torch.cat([x[..., 1:2, :], x, x[..., -2:-1, :]], dim=-2)
    return torch.cat([x[..., 1:2], x, x[..., -2:-1]], dim=-1)


def _block_body(block: "ResnetBlock", x: torch.Tensor) -> torch.Tensor:
    return block.compute(x)


def _region_body(block: "ResnetBlock", x: torch.Tensor) -> torch.Tensor:
    return block.compute(x, pad=reflect_pad_1)


_block_region = _nested_compile_region(_region_body) if regions_supported() else _block_body


class ResnetBlock(nn.Module):
    """x + IN(conv(pad(ReLU(IN(conv(pad(x))))))) with reflect padding, no dropout."""

    def __init__(self, dim: int):
        super().__init__()
        self.pad1 = nn.ReflectionPad2d(1)
        self.conv1 = nn.Conv2d(dim, dim, kernel_size=3, bias=True)
        self.norm1 = InstanceNormAct(dim, act="relu")
        self.pad2 = nn.ReflectionPad2d(1)
        self.conv2 = nn.Conv2d(dim, dim, kernel_size=3, bias=True)
        # The block's residual add is fused into the second norm: out = x + IN(conv2(...)).
        self.norm2 = InstanceNormAct(dim, act="none")

    def compute(self, x: torch.Tensor, pad=None) -> torch.Tensor:
        """`pad` replaces both reflection pads (the same values), for the compiled region."""
        pad1, pad2 = (pad, pad) if pad is not None else (self.pad1, self.pad2)
        h = self.norm1(self.conv1(pad1(x)))
        return self.norm2(self.conv2(pad2(h)), residual=x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (_block_region if _blocks_as_regions else _block_body)(self, x)


class ResnetGenerator(nn.Module):
    """c7s1-ngf, d2ngf, d4ngf, n_blocks×R4ngf, u2ngf, ungf, c7s1-out, tanh.

    9 residual blocks are CycleGAN's choice at 256² and 6 at 128²; instance norm without affine
    parameters, conv biases on (as CycleGAN does with instance norm).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, ngf: int = 64,
                 n_blocks: int = 9):
        super().__init__()
        if n_blocks < 0 or ngf < 1:
            raise ValueError(f"need ngf >= 1 and n_blocks >= 0, got ngf={ngf}, n_blocks={n_blocks}")
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, kernel_size=7, bias=True),
            InstanceNormAct(ngf, act="relu"),
        ]
        for i in range(2):  # two stride-2 downsamplings
            mult = 2 ** i
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=True),
                       InstanceNormAct(ngf * mult * 2, act="relu")]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):  # two fractionally strided upsamplings
            mult = 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, kernel_size=3, stride=2,
                                          padding=1, output_padding=1, bias=True),
                       InstanceNormAct(ngf * mult // 2, act="relu")]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, kernel_size=7, bias=True), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        init_weights_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


from ..config import GENERATORS  # noqa: E402  (the names the configuration accepts)


def unet_depth(image_size: int) -> int:
    """Downsamplings of the U-Net at this size: as many halvings as the side allows, at most 8
    (pix2pix's unet_256), so the innermost level is 1×1 at 64², 128² and 256²."""
    depth = 0
    while depth < 8 and image_size % (2 ** (depth + 1)) == 0:
        depth += 1
    return depth


class UnetLevel(nn.Module):
    """One inner level of pix2pix's U-Net: down (4×4, stride 2), the levels below, up (4×4
    transposed), and the skip — this level's input concatenated with what comes back up.
    Its input arrives through LeakyReLU(0.2), fused into the level above's norm."""

    def __init__(self, outer: int, inner: int, below: "UnetLevel | None"):
        super().__init__()
        self.down = nn.Conv2d(outer, inner, kernel_size=4, stride=2, padding=1, bias=True)
        # The innermost level has no norm on the way down (pix2pix): its plane is 1×1 at power-of-2 sizes.
        self.down_norm = InstanceNormAct(inner, act="leaky_relu", slope=0.2) if below is not None else None
        self.below = below
        self.up = nn.ConvTranspose2d(inner if below is None else 2 * inner, outer, kernel_size=4, stride=2,
                                     padding=1, bias=True)
        self.up_norm = InstanceNormAct(outer, act="none")

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        d = self.down(h)
        inner = d if self.below is None else self.below(self.down_norm(d))
        return torch.cat([h, self.up_norm(self.up(F.relu(inner)))], dim=1)


class UnetGenerator(nn.Module):
    """pix2pix's U-Net (CycleGAN's `--netG unet_128/unet_256`): `depth` 4×4 stride-2 convolutions
    ngf, 2ngf, 4ngf, 8ngf, 8ngf…, as many transposed ones back, and a skip at every level, so
    structures a pixel wide (ventricle walls, sulci) reach the output without passing the 1×1
    bottleneck. Instance norm without affine parameters, conv biases on, no dropout (CycleGAN's
    default); the outermost level has no norm, and tanh at the output."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, ngf: int = 64, depth: int = 8):
        super().__init__()
        if depth < 2 or ngf < 1:
            raise ValueError(f"need ngf >= 1 and depth >= 2, got ngf={ngf}, depth={depth}")
        widths = [min(ngf * 2 ** i, ngf * 8) for i in range(depth)]   # channels after each downsampling
        level = None
        for i in range(depth - 1, 0, -1):
            level = UnetLevel(widths[i - 1], widths[i], level)
        self.first = nn.Conv2d(in_channels, widths[0], kernel_size=4, stride=2, padding=1, bias=True)
        self.inner = level
        self.last = nn.ConvTranspose2d(2 * widths[0], out_channels, kernel_size=4, stride=2, padding=1, bias=True)
        init_weights_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.first(x), 0.2)
        return torch.tanh(self.last(F.relu(self.inner(h))))


def build_generator(kind: str, ngf: int, n_blocks: int, image_size: int) -> nn.Module:
    """A 1-channel → 1-channel translator of the named kind (config field `generator`)."""
    if kind == "resnet":
        return ResnetGenerator(1, 1, ngf, n_blocks)
    if kind == "unet":
        return UnetGenerator(1, 1, ngf, unet_depth(image_size))
    raise ValueError(f"generator must be one of {GENERATORS}, got {kind!r}")
