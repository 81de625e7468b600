"""The plain recommendation that ends an experiment's report: which arm to train, by how much it
differs from CT alone and from the runner-up, how sure that is, and what would change it.

The arm is chosen on validation (the cross-fitted validation MSE where the cells have it: the epoch
chosen on half the validation patients and scored on the other half), never on test; its test
differences are then reported with their 90 % interval over the paired splits or cohorts.
"""
from __future__ import annotations

import math

import numpy as np

from ..arms import REFERENCE_ARM, VARIANT_SEPARATOR, setting_kind
from .metrics import paired_interval, paired_power_effect, paired_tests

MAX_UNITS = 1000   # "N splits would show it": not searched beyond this


def _validation(entry: dict) -> list:
    return entry.get("val_mse_crossfit") or entry["val_mse"]


def units_to_show(differences, target: float) -> int | None:
    """The smallest number of paired units whose two-sided paired t-test at α 0.1 has 80 % power for a
    mean difference of `target`, with the observed sd of the differences; None beyond MAX_UNITS."""
    sd = float(np.std(differences, ddof=1)) if len(differences) > 1 else float("nan")
    if not math.isfinite(sd) or sd == 0 or target == 0:
        return None
    low, high = 3, MAX_UNITS
    if paired_power_effect(sd, high) > abs(target):
        return None
    while low < high:   # paired_power_effect falls as n grows
        mid = (low + high) // 2
        if paired_power_effect(sd, mid) <= abs(target):
            high = mid
        else:
            low = mid + 1
    return low


def _difference(arms: dict, arm: str, ref: str) -> str:
    a, b = arms[arm]["test_mse"], arms[ref]["test_mse"]
    t = paired_tests(a, b)
    lo, hi = paired_interval(a, b, 0.90)
    n = len(a)
    sure = ("the 90 % interval excludes 0" if (lo > 0 or hi < 0) else "the 90 % interval includes 0: not shown")
    return (f"{arm} − {ref}: {t['mean_difference']:+.1f} years² test MSE (90 % interval {lo:+.1f} to {hi:+.1f}; "
            f"lower on {t['wins']} of {n}; paired t p {t['t_p']:.3f}, Wilcoxon p {t['wilcoxon_p']:.3f}) — {sure}")


def recommendation(results: dict, unit: str = "split") -> str:
    """The report's closing section, in words."""
    arms = {a: e for a, e in results["arms"].items()   # ORACLE is a bound (a perfect translator), not a choice
            if setting_kind(a.partition(VARIANT_SEPARATOR)[0]) != "ORACLE"}
    if not arms:
        return ""
    n = len(results["cohorts"])
    by_validation = sorted(arms, key=lambda a: float(np.mean(_validation(arms[a]))))
    chosen, runner_up = by_validation[0], (by_validation[1] if len(by_validation) > 1 else None)
    val = {a: float(np.mean(_validation(arms[a]))) for a in arms}
    lines = ["## Recommendation", "",
             f"**Train {chosen}.** Over {n} {unit}(s) it has the lowest validation MSE ({val[chosen]:.1f} years², "
             "cross-fitted: chosen on validation, never on test)"
             + (f"; next is {runner_up} ({val[runner_up]:.1f})." if runner_up else ".")]
    if chosen != REFERENCE_ARM and REFERENCE_ARM in arms:
        lines.append(f"- Against CT alone: {_difference(arms, chosen, REFERENCE_ARM)}.")
    if runner_up is not None and not (runner_up == REFERENCE_ARM and chosen != REFERENCE_ARM):
        lines.append(f"- Against the runner-up: {_difference(arms, chosen, runner_up)}.")
    lines.append("- What would change it: " + _what_would_change(arms, chosen, runner_up, n, unit))
    return "\n".join(lines)


def _what_would_change(arms: dict, chosen: str, runner_up: str | None, n: int, unit: str) -> str:
    if runner_up is None:
        return "nothing was compared."
    diff = np.asarray(arms[chosen]["test_mse"], float) - np.asarray(arms[runner_up]["test_mse"], float)
    lo, hi = paired_interval(arms[chosen]["test_mse"], arms[runner_up]["test_mse"], 0.90)
    if hi < 0:
        return (f"{chosen} is ahead of {runner_up} on test too, with the interval below 0; more data of the kind "
                f"{chosen} adds, or a change of protocol, would need a new run.")
    needed = units_to_show(diff, diff.mean())
    more = (f"about {needed} {unit}s would show a difference of this size ({abs(diff.mean()):.1f} years²) with 80 % "
            "power at p < 0.1" if needed else "no feasible number of splits would show a difference this small")
    simple = min((chosen, runner_up), key=simplicity)
    return (f"{chosen} and {runner_up} are not told apart on test ({lo:+.1f} to {hi:+.1f}); {more}. Until then "
            f"{simple}, the simpler of the two, is as good a choice; rerun with more {unit}s (the finished ones "
            "are kept) before relying on either.")


# From the least to the most machinery: what a tie should fall back to.
SIMPLICITY = ("PURE", "AUG", "NAIVE", "TL", "MTL", "DANN", "CYCLEGAN", "MIX")


def simplicity(arm: str) -> int:
    kind = setting_kind(arm.partition(VARIANT_SEPARATOR)[0])
    return SIMPLICITY.index(kind) if kind in SIMPLICITY else len(SIMPLICITY)
