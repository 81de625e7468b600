"""One strategy per family of settings (the first word of TrainConfig.setting):

    predictor_only   PURE (real CT alone), AUG (torchvision's augmentations), NAIVE (raw source
                     slices mixed in), ORACLE (the source patients rendered as CT)
    duiit            MIX: the joint step (eq. 3)
    two_stage        CYCLEGAN: translators alone, frozen, then P on real + translated
    transfer         TL: P on the source, then fine-tuned on CT
    adversarial      MTL and DANN: a shared trunk with a source head or a domain critic

Each declares what its runs build, load and train (base.Method) and does one step; the loop asks
it instead of branching on the setting. Adding a baseline is one module and one line in METHODS
(template.py, docs/methods.md).
"""
from __future__ import annotations

from .adversarial import Dann, MultiTask
from .base import Method
from .duiit import Duiit
from .predictor_only import Augmented, Oracle, PredictorOnly, RawSources
from .transfer import Transfer
from .two_stage import TwoStage

METHODS: dict[str, Method] = {"PURE": PredictorOnly(), "AUG": Augmented(), "NAIVE": RawSources(), "ORACLE": Oracle(),
                              "MIX": Duiit(), "CYCLEGAN": TwoStage(), "TL": Transfer(), "MTL": MultiTask(),
                              "DANN": Dann()}


def method_of(kind: str) -> Method:
    return METHODS[kind]
