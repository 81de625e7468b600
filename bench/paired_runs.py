"""Compare two `duiit experiment` folders cell by cell, paired by cohort: for every arm both hold,
the test, validation and cross-fitted validation MSE per cohort, the mean paired difference (B − A),
its paired t-test and on how many cohorts B is lower.
Reads each finished cell's result.json, so an experiment that was stopped early still counts the
cohorts it finished in both folders. A run with `--seeds K` keeps training seed s > 0 in
cohort-c/seed-s/ARM: a cohort's number is the mean over the training seeds both folders finished
(pairing seed with seed), and `seeds` says how many that was.

    python bench/paired_runs.py runs/q-fp32 runs/q-bf16 [--json out.json]
"""
import argparse
import json
import statistics
from pathlib import Path


def finished_cells(folder: Path) -> dict:
    """{arm: {cohort: {training seed index: result}}} for every cell with a result.json."""
    cells: dict = {}
    for result in sorted(folder.glob("cohort-*/**/result.json")):
        parts = result.relative_to(folder).parts   # cohort-c/ARM/result.json or cohort-c/seed-s/ARM/result.json
        if len(parts) not in (3, 4) or (len(parts) == 4 and not parts[1].startswith("seed-")):
            continue
        cohort = int(parts[0].split("-")[1])
        seed = int(parts[1].split("-")[1]) if len(parts) == 4 else 0
        cells.setdefault(parts[-2], {}).setdefault(cohort, {})[seed] = json.loads(result.read_text())
    return cells


def cell_mse(result: dict, split: str):
    """test, val (the chosen epoch's) or val_crossfit (cells from commit 3007ebc on; None before)."""
    return result.get("val_crossfit_mse") if split == "val_crossfit" else result[split]["mse"]


def common_seeds(a_seeds: dict, b_seeds: dict, split: str) -> list:
    """The training seeds of one cohort finished in both folders, with this number in both."""
    return [s for s in sorted(set(a_seeds) & set(b_seeds))
            if cell_mse(a_seeds[s], split) is not None and cell_mse(b_seeds[s], split) is not None]


def paired(a_cells: dict, b_cells: dict, split: str) -> dict:
    from scipy import stats
    out = {}
    for arm in sorted(set(a_cells) & set(b_cells)):
        seeds = {c: common_seeds(a_cells[arm][c], b_cells[arm][c], split)
                 for c in sorted(set(a_cells[arm]) & set(b_cells[arm]))}
        cohorts = [c for c, common in seeds.items() if common]
        a = [statistics.fmean(cell_mse(a_cells[arm][c][s], split) for s in seeds[c]) for c in cohorts]
        b = [statistics.fmean(cell_mse(b_cells[arm][c][s], split) for s in seeds[c]) for c in cohorts]
        diff = [y - x for x, y in zip(a, b)]
        row = {"cohorts": cohorts, "seeds": [len(seeds[c]) for c in cohorts], "a": a, "b": b,
               "mean_a": statistics.fmean(a) if a else None, "mean_b": statistics.fmean(b) if b else None,
               "mean_diff": statistics.fmean(diff) if diff else None, "b_lower": sum(d < 0 for d in diff)}
        if len(diff) >= 2:
            row["sd_a"], row["sd_b"], row["sd_diff"] = statistics.stdev(a), statistics.stdev(b), statistics.stdev(diff)
            row["t_test_p"] = float(stats.ttest_rel(b, a).pvalue) if any(diff) else 1.0
        out[arm] = row
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--json", help="write the comparison here too")
    args = p.parse_args(argv)
    a_cells, b_cells = finished_cells(Path(args.a)), finished_cells(Path(args.b))
    splits = ("test", "val", "val_crossfit")   # choose on the cross-fitted validation where the cells have it
    result = {"a": args.a, "b": args.b, **{split: paired(a_cells, b_cells, split) for split in splits}}
    for split in splits:
        print(f"{split} MSE (years²), A = {args.a}, B = {args.b}, paired by cohort:")
        for arm, r in result[split].items():
            cells = "  ".join(f"c{c}: {x:.1f}→{y:.1f}" for c, x, y in zip(r["cohorts"], r["a"], r["b"]))
            summary = (f"A {r['mean_a']:.1f} ± {r.get('sd_a', 0):.1f}, B {r['mean_b']:.1f} ± {r.get('sd_b', 0):.1f}, "
                       f"B−A {r['mean_diff']:+.1f} ± {r.get('sd_diff', 0):.1f}, p {r.get('t_test_p', float('nan')):.2f}, "
                       f"B lower on {r['b_lower']}/{len(r['cohorts'])}, seeds per cohort {r['seeds']}"
                       if r["cohorts"] else "no cohort with this number in both folders")
            print(f"  {arm}: {summary}\n    {cells}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
