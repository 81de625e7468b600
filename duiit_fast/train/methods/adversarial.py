"""The paper's shared-trunk baselines on one source: multi-task learning (MTL-*: a CT head and a
source head, 0.95 / 0.05) and domain-adversarial training (DANN-*: a domain critic on P's features
through gradient reversal, its coefficient ramped 0 → 1). The networks and steps: train/baselines.py."""
from __future__ import annotations

from ..baselines import dann_coefficient, dann_step, domain_classifier, mtl_step, source_head
from .base import Method


class SharedTrunk(Method):
    samples_sources = True

    def batchnorm_groups(self, run, ct) -> list:
        return [ct] + [run.data.sources[k].images for k in run.cfg.sources]

    def source_batch(self, run):
        (source,) = run.cfg.sources
        return run.draw(run.data.sources[source], source)


class MultiTask(SharedTrunk):
    def extra_nets(self, P, device) -> dict:
        return {"P_src": source_head(P, device)}

    def step(self, run, x, r_x, measure_share: bool = False) -> dict:
        xs, r_s = self.source_batch(run)
        return mtl_step(run.nets, run.optimizers["pred"], x, r_x, xs, r_s, run.age_std)


class Dann(SharedTrunk):
    def extra_nets(self, P, device) -> dict:
        return {"D_dom": domain_classifier(P, device)}

    def step(self, run, x, r_x, measure_share: bool = False) -> dict:
        xs, r_s = self.source_batch(run)
        return dann_step(run.nets, run.optimizers["pred"], x, r_x, xs, r_s, run.age_std,
                         dann_coefficient(run.training_progress))
