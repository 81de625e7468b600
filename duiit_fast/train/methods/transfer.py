"""Transfer learning (TL-*): P trains on the source slices and their labels for as many steps as the
fine-tune has, then on real CT with a fresh Adam (paper, appendix A.6)."""
from __future__ import annotations

from .base import Method


class Transfer(Method):
    samples_sources = True

    def pretrain_budget(self, cfg, steps_per_epoch) -> int:
        return cfg.epochs * steps_per_epoch()
