"""Learning-rate schedule: constant, then linear decay to 0 (CycleGAN; paper §4.2)."""
from __future__ import annotations

import torch


def linear_decay_factor(epoch: int, epochs: int, decay_start: int) -> float:
    """1 until decay_start, then linearly down to 0 at `epochs`: 1 - (epoch - d)/(epochs - d)."""
    if epoch < decay_start or epochs == decay_start:
        return 1.0
    return max(0.0, 1.0 - (epoch - decay_start) / float(epochs - decay_start))


def linear_decay(optimizer: torch.optim.Optimizer, epochs: int, decay_start: int):
    """A LambdaLR stepped once per epoch; every parameter group decays by the same factor."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: linear_decay_factor(epoch, epochs, decay_start))
