"""CycleGAN's 70×70 PatchGAN discriminator (Isola et al. 2017) with fused norm+LeakyReLU."""
from __future__ import annotations

import torch
from torch import nn

from .layers import InstanceNormAct, init_weights_normal


class PatchDiscriminator(nn.Module):
    """C64 (no norm) - C128 - C256 - C512 (stride 1) - 1-channel head; 4×4 kernels, LeakyReLU 0.2.

    With n_layers=3 each output value sees a 70×70 patch of the input; with 2 a 34×34 one, with 1 a
    16×16 one (pix2pix's patch sizes, Isola et al. 2017, §4.4).
    """

    def __init__(self, in_channels: int = 1, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        if n_layers < 1 or ndf < 1:
            raise ValueError(f"need ndf >= 1 and n_layers >= 1, got ndf={ndf}, n_layers={n_layers}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, kernel_size=4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            # CycleGAN sets conv bias off when the norm is BatchNorm; with InstanceNorm it stays on.
            layers += [nn.Conv2d(ndf * prev, ndf * mult, kernel_size=4, stride=stride, padding=1, bias=True),
                       InstanceNormAct(ndf * mult, act="leaky_relu", slope=0.2)]
        layers += [nn.Conv2d(ndf * mult, 1, kernel_size=4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)
        init_weights_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
