"""P alone on real CT plus, where the setting has them, one batch of each extra set per step (ORACLE:
the source patients rendered as CT; NAIVE: the raw source slices; CYCLEGAN's stage 2: their
translations by the frozen G), in one call so BatchNorm mixes them as in the joint step."""
from __future__ import annotations

from ..step import predictor_step


def step(run, x, r_x, measure_share: bool = False) -> dict:
    sets = run.extra_sets()
    extra = [run.draw(sets[k], f"extra:{k}") for k in run.cfg.sources if k in sets]   # the run's source order
    return predictor_step(run.nets["P"], run.optimizers["pred"], x, r_x, extra, run.age_std, run.step_functions,
                          run.world.size)
