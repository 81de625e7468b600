"""A template for a new baseline: copy this file, give it a name, add one line to METHODS.

The run hands a method: cfg, data (ct_train, sources, …), nets, optimizers, pools, step_functions (the
possibly compiled loss functions), age_std, world, training_progress (0 → 1), draw(slices, name) (one
augmented batch (images, scaled ages) from the sampler `name`), source_batches() and extra_sets().
step() returns the loss terms as 0-d tensors (no host sync: the loop reads them once per step).
"""
from __future__ import annotations

from ..step import predictor_step


def step(run, x, r_x, measure_share: bool = False) -> dict:
    """Here: P alone on the real-CT batch, the smallest complete method."""
    return predictor_step(run.nets["P"], run.optimizers["pred"], x, r_x, None, run.age_std, run.step_functions,
                          run.world.size)
