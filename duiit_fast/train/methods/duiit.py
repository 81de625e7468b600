"""DUIIT (MIX-*): G, F and P on L_trans + λ·L_pred (eq. 3), then the critics on pooled fakes."""
from __future__ import annotations

from ..step import joint_step


def step(run, x, r_x, measure_share: bool = False) -> dict:
    sources = run.source_batches()
    return joint_step(run.nets, run.optimizers, run.pools, x, r_x, sources, run.cfg, measure_share=measure_share,
                      fns=run.step_functions)
