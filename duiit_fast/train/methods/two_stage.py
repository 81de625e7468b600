"""The two-stage CycleGAN (CYCLEGAN-*): the translators train alone (λ = 0) for the warm-up plus every
step the joint arm's get, are frozen, and P learns from real CT plus their translations."""
from __future__ import annotations

from .base import Method


class TwoStage(Method):
    translators = True
    samples_sources = True
    renders_sources_as_ct = True
    frozen_during_epochs = ("G", "F")
    cues_every_epoch = False

    def translator_budget(self, cfg, steps_per_epoch) -> int:
        return cfg.translator_warmup_steps + cfg.epochs * steps_per_epoch()

    def extra_sets(self, run) -> dict:
        if not run.extra_cache:   # translated once, by the frozen G
            from ...data.datasets import SliceSet
            for k in run.cfg.sources:
                s = run.data.sources[k]
                run.extra_cache[k] = SliceSet("ct", run.translate(s.images, k), s.ages, s.patient_ids)
        return run.extra_cache

    def extra_sizes(self, run) -> dict:
        return {k: len(run.data.sources[k]) for k in run.cfg.sources}
