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


def paired_interval(a, b, level: float = 0.90) -> list[float]:
    """Two-sided t interval of the mean paired difference a − b at `level` (over cohorts)."""
    from scipy import stats
    diff = np.asarray(a, float) - np.asarray(b, float)
    n = len(diff)
    if n < 2:
        return [float("nan"), float("nan")]
    half = stats.t.ppf(0.5 + level / 2, n - 1) * diff.std(ddof=1) / np.sqrt(n)
    return [float(diff.mean() - half), float(diff.mean() + half)]


def equivalence_p(a, b, margin: float) -> float:
    """Two one-sided paired t-tests (TOST) of |mean(a − b)| < margin: the larger of the two one-sided
    p-values. Below α, a and b are equivalent within ±margin at level α (their (1 − 2α) interval of
    the difference lies inside the margin)."""
    from scipy import stats
    diff = np.asarray(a, float) - np.asarray(b, float)
    n = len(diff)
    if n < 2 or margin <= 0:
        return float("nan")
    se = diff.std(ddof=1) / np.sqrt(n)
    if se == 0:
        return 0.0 if abs(diff.mean()) < margin else 1.0
    above_lower = stats.t.sf((diff.mean() + margin) / se, n - 1)   # H0: mean ≤ −margin
    below_upper = stats.t.cdf((diff.mean() - margin) / se, n - 1)  # H0: mean ≥ +margin
    return float(max(above_lower, below_upper))


def paired_power_effect(sd: float, n: int, alpha: float = 0.10, power: float = 0.80) -> float:
    """The mean paired difference a two-sided paired t-test at `alpha` detects with `power` over n
    pairs whose differences have standard deviation sd (the noncentral t, solved numerically)."""
    from scipy import optimize, stats
    df, crit = n - 1, stats.t.ppf(1 - alpha / 2, n - 1)

    def shortfall(effect):
        nc = effect / (sd / np.sqrt(n))
        return stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc) - power
    return float(optimize.brentq(shortfall, 1e-9, 8 * sd / np.sqrt(n)))   # power ≈ 1 at 8 standard errors
