"""MTL (the paper's multi-task baseline): one trunk, a CT head and a source head (train/baselines.py)."""
from __future__ import annotations

from ..baselines import mtl_step


def step(run, x, r_x, measure_share: bool = False) -> dict:
    (source,) = run.cfg.sources
    xs, r_s = run.draw(run.data.sources[source], source)
    return mtl_step(run.nets, run.optimizers["pred"], x, r_x, xs, r_s, run.age_std)
