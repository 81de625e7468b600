"""P alone: on real CT (PURE-CT), with torchvision's augmentations (AUG-*), or with one batch of each
extra set per step in one call, so BatchNorm mixes them as the joint step does: the raw source slices
(NAIVE) or the source patients rendered as CT (ORACLE, a perfect translator; phantom only)."""
from __future__ import annotations

from .base import Method


class PredictorOnly(Method):
    pass


class Augmented(Method):
    def ct_augmentation(self, cfg):
        from ..augment import paper_augmentation
        return paper_augmentation(cfg.setting, cfg.image_size)


class RawSources(Method):
    native_extra_sets = True

    def extra_sets(self, run) -> dict:
        return run.data.sources

    def extra_weight(self, cfg) -> float:
        return cfg.naive_source_weight


class Oracle(Method):
    loads_sources = False
    renders_sources_as_ct = True
    native_extra_sets = True

    def extra_sets(self, run) -> dict:
        return run.data.sources_as_ct
