"""The age predictor: torchvision ResNet50 (paper default) or ResNet18, one channel in, one out.

"small" is a ~0.3 M-parameter CNN for CPU demos and tests; it is not the paper's model.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import PREDICTORS   # build_predictor's names


def _torchvision_resnet(name: str) -> nn.Module:
    # Imported here: torchvision's package import pulls in torch._dynamo (~1.7 s of every process
    # start), and the phantom experiments' predictor is SmallRegressor.
    from torchvision import models as tvm
    net = getattr(tvm, name)(weights=None, num_classes=1)
    # One input channel (CT slices); same stem geometry as the 3-channel original.
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    return net


class SmallRegressor(nn.Module):
    """A stride-2 3×3 stem, then three conv-BN-ReLU ×2 stages with 2× max pooling, global average
    pool, linear head (~0.3 M parameters at width 16). The strided stem keeps full-resolution work
    (slow for one input channel) small: ~90 MFLOP per 64² image forward."""

    def __init__(self, width: int = 16):
        super().__init__()
        chans = [width, width * 2, width * 4, width * 8]
        norm_layer = nn.BatchNorm2d
        blocks: list[nn.Module] = [nn.Conv2d(1, width, 3, stride=2, padding=1, bias=False),
                                   norm_layer(width), nn.ReLU(inplace=True)]
        for cin, cout in zip(chans[:-1], chans[1:]):
            blocks += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), norm_layer(cout),
                       nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                       norm_layer(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True)]
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(chans[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


BN_RECALIBRATION_SLICES = 2048   # enough for stable per-channel moments; bounds the cost on big sets


def mixed_chunks(groups, batch_size: int = 64) -> list:
    """Chunks of about batch_size slices that each hold an equal share of every group (evenly spaced
    slices, at most BN_RECALIBRATION_SLICES in all): the 1:1 mix of P's training batches, whose
    within-batch variance includes the spread between the groups. One group: plain chunks."""
    per_group = min(min(len(g) for g in groups), BN_RECALIBRATION_SLICES // len(groups))
    if per_group == 0:
        return []
    picked = [g if len(g) == per_group else g[torch.linspace(0, len(g) - 1, per_group).long()] for g in groups]
    n_chunks = max(1, per_group * len(groups) // batch_size)
    return [torch.cat(parts) for parts in zip(*(torch.tensor_split(p, n_chunks) for p in picked))]


@torch.no_grad()
def recalibrate_batchnorm(net: nn.Module, groups, device, batch_size: int = 64) -> None:
    """Replace every BatchNorm's running mean/var by the population statistics of `groups` (AdaBN,
    Li et al. 2016; "precise BN"): one image tensor, or a list whose groups every chunk mixes 1:1.
    The momentum averages of training are dominated by the last few noisy batches. Re-estimated on
    real CT alone, eval mode normalises CT the way the test data will look; on the groups P trains on
    (real CT with raw, rendered or translated source slices), the way P's training batches did.
    The weights are untouched."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    chunks = mixed_chunks(list(groups) if isinstance(groups, (list, tuple)) else [groups], batch_size)
    if not norms or not chunks:
        return
    was_training, momenta = net.training, [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None   # cumulative average: every chunk below counts equally
    net.train()
    for chunk in chunks:   # equal-sized chunks, so the cumulative average weights slices equally
        net(chunk.to(device, non_blocking=True))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    net.train(was_training)


def build_predictor(name: str = "resnet50") -> nn.Module:
    """A regressor mapping (N, 1, H, W) images to (N, 1) scaled ages."""
    if name == "small":
        return SmallRegressor()
    if name in ("resnet50", "resnet18"):
        return _torchvision_resnet(name)
    raise ValueError(f"predictor must be one of {PREDICTORS}, got {name!r}")
