"""A template for a new baseline: copy this file, name the class, add one line to METHODS.

Override what differs from P trained on real CT alone (base.Method lists every declaration). The run
hands step(): cfg, data, nets, optimizers, pools, step_functions (the compiled or eager loss
functions), age_std, world, training_progress (0 → 1), draw(slices, name) (one augmented batch from the
sampler `name`), source_batches(), translate(images, source). Return the loss terms as 0-d tensors: the
loop reads them once per step and checks them and every network's weights for divergence.
"""
from __future__ import annotations

from ..step import predictor_step
from .base import Method


class Template(Method):
    samples_sources = False

    def step(self, run, x, r_x, measure_share: bool = False) -> dict:
        return predictor_step(run.optimizers["pred"], x, r_x, None, run.step_functions, run.world.size)
