"""Metrics for comparing settings on the same held-out CT patients."""
from __future__ import annotations

import numpy as np


def gap_closed(pure: float, mixed: float, oracle: float) -> float:
    """Share of the PURE → ORACLE error gap that a setting closed: 0 = no help, 1 = perfect
    translator, negative = worse than CT alone. NaN when ORACLE does not beat PURE."""
    gap = pure - oracle
    return float("nan") if gap <= 0 else (pure - mixed) / gap


def paired_bootstrap_mse_difference(err_a: np.ndarray, err_b: np.ndarray, patient_ids: np.ndarray,
                                    n_boot: int = 2000, seed: int = 0) -> dict:
    """Bootstrap over test patients (slices of one patient stay together) of MSE(a) - MSE(b).

    Returns the observed difference, a 95% interval and the share of resamples with a < b.
    """
    patients = np.unique(patient_ids)
    groups = [np.nonzero(patient_ids == p)[0] for p in patients]
    sq_a = np.array([np.sum(err_a[g] ** 2) for g in groups])
    sq_b = np.array([np.sum(err_b[g] ** 2) for g in groups])
    counts = np.array([len(g) for g in groups])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(groups), size=(n_boot, len(groups)))
    n = counts[picks].sum(axis=1)
    diff = (sq_a[picks].sum(axis=1) - sq_b[picks].sum(axis=1)) / n
    observed = (sq_a.sum() - sq_b.sum()) / counts.sum()
    lo, hi = np.percentile(diff, [2.5, 97.5])
    return {"difference": float(observed), "ci95": [float(lo), float(hi)],
            "p_a_better": float(np.mean(diff < 0))}


def paired_tests(a, b) -> dict:
    """Paired Student t-test and Wilcoxon signed-rank test of a vs b over cohorts (two-sided)."""
    from scipy import stats
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = a - b
    out = {"mean_difference": float(diff.mean()), "wins": int((diff < 0).sum()),
           "t_p": float("nan"), "wilcoxon_p": float("nan")}
    if len(a) >= 2 and np.any(diff != 0):
        out["t_p"] = float(stats.ttest_rel(a, b).pvalue)
        out["wilcoxon_p"] = float(stats.wilcoxon(a, b).pvalue)
    return out
