"""View one `duiit experiment` results.json over a subset of its cohorts, tests recomputed.

A replication adds cohorts to a finished experiment's folder (`duiit experiment --cohorts 15` on the
record's folder trains cohorts 5–14 only); its results.json then pools every cohort. This script
restates it over the cohorts named — e.g. the added ones alone — with the experiment's own
comparison (gap share, its bootstrap interval, paired t-test and Wilcoxon p) and verdict:

    PYTHONPATH=. python bench/cohort_subset.py RUN/results.json --cohorts 5-14 --out DIR/results.json --report DIR

Every per-cohort list of an arm (test and validation MSE, cues, selected epochs, ...) is cut to the
cohorts kept; everything else is copied. The view records which cohorts it holds and where from.
--report writes the experiment's report.md and bar plot for the view into DIR.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from duiit_fast.eval.experiment_report import compare, verdict, write_report
from duiit_fast.io import write_json


def parse_cohorts(text: str) -> list[int]:
    """'5-14' or '0,2,4' (or a mix: '0-2,7') as a sorted list of cohort ids."""
    ids = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        ids.update(range(int(low), int(high or low) + 1))
    return sorted(ids)


def subset(results: dict, keep: list[int]) -> dict:
    """results restated over the cohorts `keep` (ids as in results["cohorts"])."""
    cohorts = list(results["cohorts"])
    missing = [c for c in keep if c not in cohorts]
    if missing:
        raise SystemExit(f"cohorts {missing} are not in this results.json (it has {cohorts})")
    rows = [cohorts.index(c) for c in keep]
    arms = {}
    for arm, entry in results["arms"].items():
        arms[arm] = {key: [value[i] for i in rows] if isinstance(value, list) and len(value) == len(cohorts)
                     else value for key, value in entry.items()}
    comparison = compare(arms)
    view = {key: value for key, value in results.items() if key not in ("arms", "comparison", "verdict")}
    view.update({"cohorts": keep, "arms": arms, "comparison": comparison,
                 "verdict": verdict(arms, comparison, len(keep))})
    view.pop("wall_seconds_this_invocation", None)   # the run's, not the view's
    return view


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a duiit experiment results.json")
    parser.add_argument("--cohorts", required=True, help="cohort ids to keep: 5-14, or 0,2,4")
    parser.add_argument("--out", required=True)
    parser.add_argument("--report", metavar="DIR", help="also write report.md and test_mse.png of the view here")
    args = parser.parse_args(argv)
    view = subset(json.loads(Path(args.results).read_text()), parse_cohorts(args.cohorts))
    view["subset_of"] = args.results
    write_json(Path(args.out), view)
    if args.report:
        write_report(Path(args.report), view)
    else:
        print(view["verdict"])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
