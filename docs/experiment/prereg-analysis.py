"""The pre-registered analysis (docs/preregistration.md), fixed with the plan before the run:
`python docs/experiment/prereg-analysis.py [T1_RESULTS T2_RESULTS]` prints the four primary endpoints
with their verdicts and the secondary numbers, from the two folders' results.json (on whichever
cohorts both hold: the report says how many)."""
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from duiit_fast.eval.metrics import equivalence_p, paired_interval, paired_tests

ALPHA, MARGIN = 0.10, 6.0
HERE = Path(__file__).parent
ENDPOINTS = (("E1", "t2", "NAIVE-CT-MRI"), ("E2", "t2", "PURE-CT"), ("E3", "t1", "NAIVE-CT-MRI"),
             ("E4", "t1", "PURE-CT"))


def load(path):
    results = json.loads(Path(path).read_text())
    return {c: {arm: e["test_mse"][i] for arm, e in results["arms"].items()}
            for i, c in enumerate(results["cohorts"])}, results


def verdict(diff_mean, t_p, w_p, tost_p):
    if t_p < ALPHA and w_p < ALPHA:
        return "DUIIT better" if diff_mean < 0 else "DUIIT worse"
    return f"equivalent within ±{MARGIN:g}" if tost_p < ALPHA else "not shown either way"


def holm(ps):
    order = np.argsort(ps)
    adjusted, running = [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


def main(t1_path=HERE / "prereg-t1" / "results.json", t2_path=HERE / "prereg-t2" / "results.json"):
    cells = {"t1": load(t1_path)[0], "t2": load(t2_path)[0]}
    cohorts = sorted(set(cells["t1"]) & set(cells["t2"]))
    print(f"{len(cohorts)} cohorts in both folders: {cohorts[0]}–{cohorts[-1]}")
    rows = []
    for name, contrast, ref in ENDPOINTS:
        duiit = [cells[contrast][c]["MIX-CT-MRI"] for c in cohorts]
        other = [cells[contrast][c][ref] for c in cohorts]
        t = paired_tests(duiit, other)
        lo, hi = paired_interval(duiit, other, 0.90)
        tost = equivalence_p(duiit, other, MARGIN)
        rows.append((name, contrast, ref, t, lo, hi, tost))
    adjusted = holm([r[3]["t_p"] for r in rows])
    print("| endpoint | contrast | DUIIT − | mean (90 % interval) | lower on | t p (Holm) | Wilcoxon p | TOST p | verdict |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (name, contrast, ref, t, lo, hi, tost), adj in zip(rows, adjusted):
        print(f"| {name} | {contrast.upper()} | {ref} | {t['mean_difference']:+.1f} ({lo:+.1f} to {hi:+.1f}) | "
              f"{t['wins']}/{len(cohorts)} | {t['t_p']:.3g} ({adj:.3g}) | {t['wilcoxon_p']:.3g} | {tost:.3g} | "
              f"{verdict(t['mean_difference'], t['t_p'], t['wilcoxon_p'], tost)} |")
    for contrast in ("t1", "t2"):
        per = {arm: np.array([cells[contrast][c][arm] for c in cohorts]) for arm in cells[contrast][cohorts[0]]}
        gap = {arm: (per["PURE-CT"].mean() - per[arm].mean()) / (per["PURE-CT"].mean() - per["ORACLE-CT-MRI"].mean())
               for arm in ("MIX-CT-MRI", "NAIVE-CT-MRI")}
        means = ", ".join(f"{arm} {v.mean():.1f} ± {v.std(ddof=1):.1f}" for arm, v in per.items())
        print(f"{contrast.upper()}: {means}; gap closed DUIIT {100 * gap['MIX-CT-MRI']:.0f} %, "
              f"NAIVE {100 * gap['NAIVE-CT-MRI']:.0f} % (intervals: the folder's report.md); "
              f"sd of DUIIT − NAIVE {np.std(per['MIX-CT-MRI'] - per['NAIVE-CT-MRI'], ddof=1):.1f}")
    same = all(cells["t1"][c][a] == cells["t2"][c][a] for c in cohorts for a in ("PURE-CT", "ORACLE-CT-MRI"))
    print(f"PURE-CT and ORACLE equal in both folders (they do not see the MRI's contrast): {same}")
    return rows


if __name__ == "__main__":
    main(*sys.argv[1:3])
