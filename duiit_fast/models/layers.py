"""nn.Module wrappers of the fused ops, so every model runs on every backend."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .. import ops


class InstanceNormAct(nn.Module):
    """InstanceNorm2d (track_running_stats=False) followed by an activation, as one fused op.

    With affine=False (CycleGAN's generator default) there are no parameters. Call with
    `residual=` to get the ResNet-block tail residual + IN(x) (act must be "none").
    """

    def __init__(self, num_features: int, act: str = "relu", slope: float = 0.2,
                 eps: float = 1e-5, affine: bool = False):
        super().__init__()
        self.num_features, self.act, self.slope, self.eps = num_features, act, slope, eps
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        # The backend is the run's (ops.use_backend), chosen once, not a property of the layer.
        return ops.instance_norm_act(x, self.weight, self.bias, residual, self.act, self.slope, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, act={self.act!r}, eps={self.eps}, "
                f"affine={self.weight is not None}")


def init_weights_normal(module: nn.Module, std: float = 0.02) -> None:
    """CycleGAN's 'normal' init: conv weights N(0, std), biases 0; affine norms N(1, std), 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, InstanceNormAct) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
