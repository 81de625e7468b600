"""CycleGAN's ResNet generator (Zhu et al. 2017), layer for layer, with fused norm+activation."""
from __future__ import annotations

import torch
from torch import nn

from .layers import InstanceNormAct, init_weights_normal


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(self.conv1(self.pad1(x)))
        return self.norm2(self.conv2(self.pad2(h)), residual=x)


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
