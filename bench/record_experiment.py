"""Write duiit_fast/recorded/experiment.json, the summary `make demo` quotes, from a recorded
`duiit experiment` folder's results.json and any reruns of the same protocol.

    python bench/record_experiment.py --run docs/experiment/results.json --commit 7538d91 \
        --machine "x86_64 (AMD EPYC, AVX2), 2 cores, torch 2.14.1+cu130" \
        --rerun docs/experiment/rerun-zen4/results.json 39a8db5 \
                "x86_64 (AMD EPYC Zen 4, AVX-512 with BF16), 2 cores, torch 2.14.1+cu130"

Every number comes from the results files (tests/test_demo.py checks that it does).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from duiit_fast.io import write_json

RECORDED = Path(__file__).resolve().parents[1] / "duiit_fast" / "recorded" / "experiment.json"


def summarise(results_path: str, commit: str, machine: str | None = None) -> dict:
    run = json.loads(Path(results_path).read_text())
    arms = {arm: {"mean": statistics.mean(r["test_mse"]), "std": statistics.stdev(r["test_mse"])}
            for arm, r in run["arms"].items()}
    return {"date": run["date"], "commit": commit, "machine": machine or run["machine"], "cohorts": len(run["cohorts"]),
            "wall_minutes": round(run["wall_seconds_this_invocation"] / 60, 1), "workers": run["workers"],
            "verdict": run["verdict"], "arms": arms}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="the record's results.json")
    parser.add_argument("--commit", required=True, help="the commit the record ran at")
    parser.add_argument("--machine", help="describe the record's machine (default: results.json's)")
    parser.add_argument("--rerun", nargs=3, action="append", default=[], metavar=("RESULTS", "COMMIT", "MACHINE"),
                        help="a rerun of the same protocol: its results.json, commit and machine")
    args = parser.parse_args(argv)
    record = summarise(args.run, args.commit, args.machine)
    if args.rerun:
        record["reruns"] = [summarise(path, commit, machine) for path, commit, machine in args.rerun]
    write_json(RECORDED, record)   # atomic: the demo never reads half a file
    print(f"wrote {RECORDED}")


if __name__ == "__main__":
    main()
