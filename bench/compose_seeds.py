"""Compose one `duiit experiment` results.json from arms measured in different runs of the same protocol.

When the experiment's defaults change only how some arms are *evaluated* (P's BatchNorm statistic,
`predictor_bn_stats = "by_setting"`), the other arms' trainings and numbers stay what they were, so a
K-seed view of today's defaults can take those arms from the old K-seed results and the re-evaluated
arms from the folder they were rerun in — without recomputing hours of identical trainings.

    PYTHONPATH=. python bench/compose_seeds.py --out docs/experiment/by-setting-seeds-5/results.json \
        --cohorts 5 --seeds 5 \
        --results docs/experiment/source-weight-0.5-seeds-5/results.json PURE-CT CYCLEGAN-CT-MRI \
        --folder RUNS/bnmix ORACLE-CT-MRI NAIVE-CT-MRI MIX-CT-MRI

Every arm must have been run with the protocol of today's defaults (`experiment_config()`) up to its
BatchNorm statistic, and with the statistic today's defaults give it; the script refuses otherwise.
The comparison, gap interval and verdict are the experiment's own functions.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from duiit_fast.config import TrainConfig
from duiit_fast.eval.experiment_report import collect_results, compare, verdict
from duiit_fast.experiment import DEFAULT_ARMS, experiment_config
from duiit_fast.io import write_json

# Fields that may differ between the composed runs: where the files lived, and the evaluation statistic
# (checked per arm below). Everything else is the protocol and must be today's defaults.
FREE_FIELDS = {"out_dir", "cache_dir", "predictor_bn_stats"}


def check_protocol(config: dict, source: str, fast_path: str) -> TrainConfig:
    """fast_path: what the run's "auto" settings resolved to (results.json's fast_path)."""
    defaults = json.loads(json.dumps(experiment_config().to_dict()))
    saved = {k: v for k, v in config.items() if k not in FREE_FIELDS}
    if saved.get("precision") == "bf16" and f", bf16," in fast_path:   # what "auto" picks on these CPUs
        saved["precision"] = defaults["precision"]
    differ = [k for k, v in saved.items() if k in defaults and defaults[k] != v]
    if differ:
        raise SystemExit(f"{source}: not today's protocol ({', '.join(differ)} differ)")
    return TrainConfig.from_dict(config)


def check_statistic(cfg: TrainConfig, arm: str, source: str) -> str:
    used = dataclasses.replace(cfg, setting=arm).bn_stats
    wanted = dataclasses.replace(experiment_config(), setting=arm).bn_stats
    if used != wanted:
        raise SystemExit(f"{source}: {arm} was evaluated with {used}, today's defaults use {wanted}")
    return used


def from_results(path: Path, arms, cohorts: int, seeds: int) -> dict:
    run = json.loads(path.read_text())
    if len(run["cohorts"]) != cohorts or run.get("seeds", 1) != seeds:
        raise SystemExit(f"{path}: {len(run['cohorts'])} cohorts × {run.get('seeds', 1)} seeds, not {cohorts} × {seeds}")
    cfg = check_protocol(run["config"], str(path), run.get("fast_path", ""))
    return {arm: {**run["arms"][arm], "bn_stats": check_statistic(cfg, arm, str(path))} for arm in arms}


def from_folder(folder: Path, arms, cohorts: int, seeds: int) -> dict:
    fast_path = json.loads((folder / "results.json").read_text()).get("fast_path", "")
    cfg = check_protocol(json.loads((folder / "experiment.json").read_text())["config"], str(folder), fast_path)
    for arm in arms:
        check_statistic(cfg, arm, str(folder))
    return collect_results(folder, cohorts, arms, cfg, seeds)["arms"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--cohorts", type=int, required=True)
    parser.add_argument("--seeds", type=int, required=True)
    parser.add_argument("--results", nargs="+", action="append", default=[], metavar="RESULTS_JSON ARM",
                        help="a results.json, then the arms taken from it")
    parser.add_argument("--folder", nargs="+", action="append", default=[], metavar="EXPERIMENT_DIR ARM",
                        help="an experiment folder, then the arms read from its cells")
    parser.add_argument("--machine", default="", help="where the composed runs ran")
    args = parser.parse_args(argv)
    arms, sources = {}, []
    for path, *names in args.results:
        arms.update(from_results(Path(path), names, args.cohorts, args.seeds))
        sources.append({"results": path, "arms": names})
    for folder, *names in args.folder:
        arms.update(from_folder(Path(folder), names, args.cohorts, args.seeds))
        sources.append({"folder": folder, "arms": names})
    ordered = {arm: arms[arm] for arm in DEFAULT_ARMS if arm in arms}
    ordered.update({a: e for a, e in arms.items() if a not in ordered})
    comparison = compare(ordered)
    results = {"cohorts": list(range(args.cohorts)), "seeds": args.seeds, "arms": ordered,
               "config": experiment_config().to_dict(), "comparison": comparison,
               "verdict": verdict(ordered, comparison, args.cohorts), "composed_from": sources,
               "date": time.strftime("%Y-%m-%d"), "machine": args.machine}
    write_json(Path(args.out), results)
    print(results["verdict"])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
