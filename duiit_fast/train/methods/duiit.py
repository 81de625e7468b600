"""DUIIT (MIX-*): G, F and P on L_trans + λ·L_pred (eq. 3), then the critics on pooled fakes."""
from __future__ import annotations

from ..evaluation import translated_probes
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
        # G's translations as P sees them now; a CT-sized subset suffices.
        return [ct] + [translated_probes(run, k, min(len(run.data.sources[k]), len(ct))) for k in run.cfg.sources]

    def step(self, run, x, r_x, measure_share: bool = False) -> dict:
        return joint_step(run.nets, run.optimizers, run.pools, x, r_x, run.source_batches(), run.cfg,
                          measure_share=measure_share, fns=run.step_functions)
