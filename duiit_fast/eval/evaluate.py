"""Evaluation of trained models on data: ages predicted by P, regression metrics per split, and
per-source metrics of translations. Functions of models and slices (Eval → Models), not of the
trainer, which only calls them."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import DuiitDataError


@torch.no_grad()
def predict_ages(predictor: nn.Module, images: torch.Tensor, device, age_mean: float, age_std: float,
                 batch_size: int = 128) -> torch.Tensor:
    """Ages in years for (N, 1, S, S) CT slices in [-1, 1] (P predicts standardised ages)."""
    was_training = predictor.training
    predictor.eval()
    out = [predictor(images[i:i + batch_size].to(device)).squeeze(1).float().cpu()
           for i in range(0, len(images), batch_size)]
    predictor.train(was_training)
    return torch.cat(out) * age_std + age_mean


def regression_metrics(pred: torch.Tensor, slices) -> dict:
    """Slice-level MSE/MAE in years² / years, the MSE of each patient's mean prediction, and where
    the error comes from (error_parts)."""
    err = pred - slices.ages
    per_patient = []
    for pid in slices.patients:
        mask = torch.from_numpy(slices.patient_ids == pid)
        per_patient.append(float(pred[mask].mean() - slices.ages[mask][0]))
    return {"mse": float(err.square().mean()), "mae": float(err.abs().mean()),
            "patient_mse": float(np.mean(np.square(per_patient))),
            "n_slices": len(slices), "n_patients": len(per_patient), **error_parts(pred, slices.ages)}


def patient_squared_errors(pred: torch.Tensor, slices) -> tuple[list[float], list[int]]:
    """Each patient's mean squared slice error (years²) and slice count, patients in split order:
    the slice-weighted mean of the first is the split's MSE."""
    sq = (pred - slices.ages).double().square()
    errors, counts = [], []
    for pid in slices.patients:
        mask = torch.from_numpy(slices.patient_ids == pid)
        errors.append(float(sq[mask].mean()))
        counts.append(int(mask.sum()))
    return errors, counts


def cross_fitted_val_mse(history: list[dict]) -> float | None:
    """The validation MSE of choosing the epoch on validation, without the luck of the choice.

    The best epoch's validation MSE is optimistic, and more so the noisier the curve: the minimum of
    24 noisy epochs is partly a lucky draw, so it favours noisy training over smooth. Here the
    validation patients are split in two halves (even and odd positions); the epoch chosen on one
    half is scored on the other, both ways, slice-weighted. It is never below the best epoch's
    validation MSE: the two epochs' whole-split MSEs add up to it plus each half's minimum, and each is
    at least the best. None when the history lacks per-patient errors (older runs) or there are fewer
    than two validation patients."""
    if not history or any(r.get("val_patient_mse") is None for r in history) \
            or len(history[0]["val_patient_mse"]) < 2:
        return None
    errors = np.asarray([r["val_patient_mse"] for r in history], dtype=np.float64)   # (epochs, patients)
    counts = np.asarray(history[0]["val_patient_slices"], dtype=np.float64)
    halves = [np.arange(0, errors.shape[1], 2), np.arange(1, errors.shape[1], 2)]

    def half_mse(h):   # (epochs,) slice-weighted MSE of one half
        return errors[:, h] @ counts[h] / counts[h].sum()
    total = 0.0
    for chooser, scorer in (halves, halves[::-1]):
        epoch = int(np.argmin(half_mse(chooser)))   # the first epoch at the minimum, as the trainer keeps
        total += half_mse(scorer)[epoch] * counts[scorer].sum()
    return float(total / counts.sum())


def error_parts(pred: torch.Tensor, ages: torch.Tensor) -> dict:
    """The least-squares line of the predictions on the true ages: its slope (< 1: predictions pulled
    toward the mean age), the mean bias and the scatter around the line (sd, years). MSE = bias² +
    (1 − slope)²·var(age) + scatter² exactly, so the three say which part an error comes from.
    None where the ages do not vary (no line)."""
    pred, ages = pred.double(), ages.double()
    var = float(ages.var(unbiased=False))
    if var <= 0:
        return {"slope": None, "bias": float((pred - ages).mean()), "scatter": None}
    slope = float(((pred - pred.mean()) * (ages - ages.mean())).mean()) / var
    resid = pred - pred.mean() - slope * (ages - ages.mean())
    return {"slope": slope, "bias": float((pred - ages).mean()), "scatter": float(resid.square().mean().sqrt())}


def per_source(sources, metrics_of) -> dict:
    """metrics_of(source) for every source, keys prefixed by the source when there are several."""
    out = {}
    for k in sources:
        prefix = "" if len(sources) == 1 else f"{k}_"
        out.update({prefix + name: v for name, v in metrics_of(k).items()})
    return out


def require_finite(images: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(torch.as_tensor(images)).all()):
        raise DuiitDataError(f"{what} input", "holds NaN or infinite values (a network would return NaN)")
