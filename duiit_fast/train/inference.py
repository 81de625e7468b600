"""A trained state in use: translating source slices into CT style and predicting ages. Functions of
a Trainer `t`; the Trainer keeps them as thin calls."""
from __future__ import annotations

import numpy as np
import torch

from .. import ops
from ..errors import DuiitConfigError
from ..eval.evaluate import predict_ages, regression_metrics, require_finite


@torch.no_grad()
def translate(t, images, source: str = "mri", batch_size: int = 32, net: str = "G") -> torch.Tensor:
    """Translate source-modality slices (N, H, W) or (N, 1, H, W) in [-1, 1] into CT style (net "G"),
    or CT-style slices back into the source's style (net "F": the cycle's second half)."""
    if "G" not in t.nets or source not in t.nets["G"]:
        have = list(t.nets["G"]) if "G" in t.nets else []
        raise DuiitConfigError(f"no translator for source {source!r} in setting {t.cfg.setting} "
                               f"(translators: {have or 'none'})")
    x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images, dtype=torch.float32)
    if x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4 or x.shape[1] != 1 or x.shape[-1] % 4 or x.shape[-2] % 4:
        raise ValueError(f"translate needs (N, [1,] H, W) with H, W multiples of 4, got {tuple(x.shape)}")
    require_finite(x, "translate")
    translator = t.nets[net][source]
    was_training = translator.training
    translator.eval()
    # Eager inference takes the configured backend as an eager step would (a compiled run's steps take
    # the reference ops, which only Inductor fuses); no graph is kept (the values are the same).
    with ops.use_backend(ops.run_backend(t.cfg.backend, compiled=False)), torch.no_grad():
        out = [translator(x[i:i + batch_size].to(t.device)).float().cpu() for i in range(0, len(x), batch_size)]
    translator.train(was_training)
    return torch.cat(out)


def predict(t, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Ages in years for (N, 1, S, S) CT slices in [-1, 1], from the predictor the run evaluates."""
    require_finite(images, "predict")
    return predict_ages(t.eval_predictor, images, t.device, t.age_mean, t.age_std, batch_size)


def evaluate(t, split: str = "test") -> dict:
    slices = t.data.split(split)
    return {**regression_metrics(predict(t, slices.images), slices), "split": split_protocol(t.cfg)}


def split_protocol(cfg) -> str:
    if cfg.ct is not None and cfg.split == "image":
        return "image-level (leaky: slices of one patient can be in train and test)"
    return "patient-level"
