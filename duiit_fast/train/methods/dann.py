"""DANN (domain-adversarial): a domain critic on P's features through gradient reversal, its
coefficient ramped 0 → 1 over training (train/baselines.py)."""
from __future__ import annotations

from ..baselines import dann_coefficient, dann_step


def step(run, x, r_x, measure_share: bool = False) -> dict:
    (source,) = run.cfg.sources
    xs, r_s = run.draw(run.data.sources[source], source)
    return dann_step(run.nets, run.optimizers["pred"], x, r_x, xs, r_s, run.age_std,
                     dann_coefficient(run.training_progress))
