"""DUIIT (MIX-*): G, F and P on L_trans + λ·L_pred (eq. 3), then the critics on pooled fakes."""
from __future__ import annotations

from ...eval.label_cues import evenly_spaced
from ..step import joint_step
from .base import Method


class Duiit(Method):
    translators = True
    samples_sources = True
    renders_sources_as_ct = True   # the label cues' reference: the same patients as CT
    trains_jointly = True

    def batch_size(self, cfg) -> int:
        return cfg.batch_size

    def translator_budget(self, cfg, steps_per_epoch) -> int:
        return cfg.translator_warmup_steps

    def batchnorm_groups(self, run, ct) -> list:
        groups = [ct]
        for k in run.cfg.sources:   # G's translations as P sees them now; a CT-sized subset suffices
            images = run.data.sources[k].images
            groups.append(run.translate(images[evenly_spaced(len(images), min(len(images), len(ct)))], k))
        return groups

    def step(self, run, x, r_x, measure_share: bool = False) -> dict:
        return joint_step(run.nets, run.optimizers, run.pools, x, r_x, run.source_batches(), run.cfg,
                          measure_share=measure_share, fns=run.step_functions)
