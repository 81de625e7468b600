"""One strategy per family of settings: what a training step does after the real-CT batch is drawn.

    predictor_only   PURE-CT, NAIVE-*, ORACLE-*, CYCLEGAN-* (stage 2), TL-* (the fine-tune), AUG-*
    duiit            MIX-* (the joint step, eq. 3)
    multitask        MTL-*
    dann             DANN-*

A method is handed the run (networks, optimisers, batches, config) and returns the step's loss terms
as device tensors; the loop reads them once. Adding a baseline is one module here and one line in
METHODS (see template.py and docs/methods.md).
"""
from __future__ import annotations

from . import dann, duiit, multitask, predictor_only

# setting kind (the first word of TrainConfig.setting) → the module whose step() trains it
METHODS = {"PURE": predictor_only, "AUG": predictor_only, "NAIVE": predictor_only, "ORACLE": predictor_only,
           "CYCLEGAN": predictor_only, "TL": predictor_only, "MIX": duiit, "MTL": multitask, "DANN": dann}


def method_of(kind: str):
    return METHODS[kind]
