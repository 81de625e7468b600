"""Write duiit_fast/recorded/experiment.json, the summary `make demo` quotes, from a recorded
`duiit experiment` folder's results.json and the same protocol measured again (more training seeds
per cell, another CPU).

    PYTHONPATH=. python bench/record_experiment.py --run docs/experiment/results.json --commit 0a8f27f \
        --machine "x86_64 (AMD EPYC family 26, Zen 5, AVX-512 with BF16), 2 cores, torch 2.14.1+cu130" \
        --also by-setting-seeds-5/results.json 0a8f27f "the same protocol with 5 training seeds per cell, ..."

An --also path is relative to docs/experiment/. Every number comes from the results files
(tests/test_demo.py checks that it does).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from duiit_fast.io import write_json

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "duiit_fast" / "recorded" / "experiment.json"
DOCS = ROOT / "docs" / "experiment"


def summarise(results_path, commit: str, machine: str | None = None) -> dict:
    run = json.loads(Path(results_path).read_text())
    arms = {arm: {"mean": statistics.mean(r["test_mse"]), "std": statistics.stdev(r["test_mse"])}
            for arm, r in run["arms"].items()}
    return {"date": run["date"], "commit": commit, "machine": machine or run.get("machine", ""), "cohorts": len(run["cohorts"]),
            "seeds": run.get("seeds", 1), "verdict": run["verdict"], "arms": arms,
            # a view composed from several runs (bench/compose_seeds.py) has no one wall time
            **({"wall_minutes": round(run["wall_seconds_this_invocation"] / 60, 1), "workers": run["workers"]}
               if "wall_seconds_this_invocation" in run else {})}


def summarise_also(relative_path: str, commit: str, label: str) -> dict:
    """A remeasurement: its wall time is left out (it may have reused the record's finished cells)."""
    summary = summarise(DOCS / relative_path, commit)
    summary.pop("wall_minutes", None), summary.pop("workers", None)
    return {"label": label, "results": relative_path, **summary}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="the record's results.json")
    parser.add_argument("--commit", required=True, help="the commit the record ran at")
    parser.add_argument("--machine", help="describe the record's machine (default: results.json's)")
    parser.add_argument("--also", nargs=3, action="append", default=[], metavar=("RESULTS", "COMMIT", "LABEL"),
                        help="the same protocol measured again: its results.json (relative to docs/experiment/), "
                             "commit, and what was different")
    args = parser.parse_args(argv)
    record = summarise(args.run, args.commit, args.machine)
    if args.also:
        record["also"] = [summarise_also(path, commit, label) for path, commit, label in args.also]
    write_json(RECORDED, record)   # atomic: the demo never reads half a file
    print(f"wrote {RECORDED}")


if __name__ == "__main__":
    main()
