"""The CT age reader: a small regressor trained on real CT only, which checkpoints store beside the
run's networks. It reads the label cues of translations (eval/label_cues.py) and, with
pred_feedback = "ct_reader", gives G its discriminative gradient."""
from __future__ import annotations

import torch
from torch import nn

from .predictor import SmallRegressor


class AgeReader(nn.Module):
    """A small CT regressor that answers in years: (N, 1, S, S) → (N,)."""

    def __init__(self, width: int = 16, age_mean: float = 55.0, age_std: float = 20.0):
        super().__init__()
        self.net = SmallRegressor(width)
        self.register_buffer("age_mean", torch.tensor(float(age_mean)))
        self.register_buffer("age_std", torch.tensor(float(age_std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1) * self.age_std + self.age_mean


class OnScale(nn.Module):
    """A frozen reader re-expressed on the predictor's standardised age scale, (N, 1) like P."""

    def __init__(self, reader: AgeReader, age_mean: float, age_std: float):
        super().__init__()
        self.reader, self.age_mean, self.age_std = reader, age_mean, age_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((self.reader(x) - self.age_mean) / self.age_std)[:, None]
