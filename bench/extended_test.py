"""Re-evaluate the trainings of a phantom `duiit experiment` folder on more test patients.

The phantom draws a cohort's CT patients in sequence from one generator (training, then validation,
then test: data/datasets.phantom_cohorts), so a larger `ct_test_patients` appends new test patients
and leaves training, validation and the first test patients as they were. Each cell's selected
predictor (its checkpoint's best epoch, with the BatchNorm statistic it was evaluated with) is read
on the cohort's first N test patients. As a check it must first reproduce the cell's recorded test
MSE on the patients the experiment had; the script stops otherwise.

    python bench/extended_test.py RUN_DIR --test-patients 200 --out extended.json [--cohorts 5] [--seeds 1]

The output is a results.json-shaped file (arms → test_mse per cohort on the N patients) with the
experiment's own comparison and verdict, and per cell the MSE on the original and on the added
patients.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from duiit_fast.config import TrainConfig
from duiit_fast.eval.evaluate import patient_squared_errors, regression_metrics
from duiit_fast.eval.experiment_report import GAP_INTERVAL, cohort_dir_of, compare, source_of, verdict
from duiit_fast.experiment import DEFAULT_ARMS
from duiit_fast.io import write_json
from duiit_fast.train.checkpoint import read_checkpoint
from duiit_fast.train.data import TrainingData, load_training_data
from duiit_fast.train.trainer import Trainer

# The recorded MSE and its recomputation on the same patients may differ in the last bits only
# (the slices are batched differently at inference).
REPRODUCTION_TOLERANCE = 1e-4   # relative


def larger_test_config(cfg: TrainConfig, test_patients: int, cache_dir: str) -> TrainConfig:
    if test_patients < cfg.phantom.ct_test_patients:
        raise SystemExit(f"--test-patients {test_patients} is below the experiment's {cfg.phantom.ct_test_patients}")
    return dataclasses.replace(cfg, cache_dir=cache_dir,
                               phantom=dataclasses.replace(cfg.phantom, ct_test_patients=test_patients))


def ct_data(cfg: TrainConfig) -> TrainingData:
    """The cohort's CT splits alone (evaluation needs no source images)."""
    data = load_training_data(dataclasses.replace(cfg, setting="PURE-CT"))
    return TrainingData(data.ct_train, data.ct_val, data.ct_test)


def selected_predictor(state: dict, cfg: TrainConfig, data: TrainingData) -> Trainer:
    trainer = Trainer(cfg, data=data, progress=False, check_paths=False)
    trainer.restore(state)
    trainer.use_selected_predictor()
    return trainer


def evaluate_cell(cell_dir: Path, test_patients: int, cache_dir: str, data_cache: dict) -> dict:
    recorded = json.loads((cell_dir / "result.json").read_text())
    state = read_checkpoint(cell_dir / "checkpoint.pt")
    state_cfg = TrainConfig.from_dict(state["config"])
    cfg = larger_test_config(state_cfg, test_patients, cache_dir)
    key = (cfg.phantom.seed, test_patients)
    if key not in data_cache:
        data_cache.clear()
        data_cache[key] = ct_data(cfg)
    data = data_cache[key]
    trainer = selected_predictor(state, cfg, data)
    test = data.ct_test
    pred = trainer.predict(test.images)
    original = test.patients[:state_cfg.phantom.ct_test_patients]
    added = test.patients[state_cfg.phantom.ct_test_patients:]
    on_original = regression_metrics(pred[np.isin(test.patient_ids, original)], test.select_patients(original))
    if abs(on_original["mse"] - recorded["test"]["mse"]) > REPRODUCTION_TOLERANCE * recorded["test"]["mse"]:
        raise SystemExit(f"{cell_dir}: the original test patients give MSE {on_original['mse']!r}, "
                         f"the cell recorded {recorded['test']['mse']!r}: not the recorded predictor or patients")
    errors, slices = patient_squared_errors(pred, test)
    return {"all": regression_metrics(pred, test), "original": on_original, "patient_sq_errors": errors,
            "patient_slices": slices, "n_original": len(original),
            "added": regression_metrics(pred[np.isin(test.patient_ids, added)], test.select_patients(added)),
            "val_mse": recorded["val"]["mse"], "val_crossfit_mse": recorded.get("val_crossfit_mse")}


def test_patient_interval(cells: dict, arm: str, first: int | None = None, draws: int = 2000, seed: int = 0):
    """90 % percentile interval of the arm's gap share (PURE − arm) / (PURE − ORACLE) when only the test
    patients are redrawn: each draw resamples every cohort's patients (its first `first`, or all) with
    replacement, the same patients for every arm and seed, and keeps the trainings. It shows how much
    of the share is the luck of the test set. None without PURE-CT and the arm's ORACLE."""
    oracle = f"ORACLE-CT-{source_of(arm)}"
    if "PURE-CT" not in cells or oracle not in cells:
        return None
    rng = np.random.default_rng(seed)
    n_cohorts = len(cells[arm])
    means = {a: np.zeros(draws) for a in ("PURE-CT", oracle, arm)}
    for c in range(n_cohorts):
        n = first or len(cells[arm][c][0]["patient_sq_errors"])
        picks = rng.integers(0, n, size=(draws, n))
        for a in means:
            for run in cells[a][c]:
                err = np.asarray(run["patient_sq_errors"][:n]) * np.asarray(run["patient_slices"][:n])
                slices = np.asarray(run["patient_slices"][:n], float)
                means[a] += err[picks].sum(1) / slices[picks].sum(1) / (n_cohorts * len(cells[a][c]))
    p, o, m = means["PURE-CT"], means[oracle], means[arm]
    low, high = np.percentile((p - m) / (p - o), GAP_INTERVAL)
    return [float(low), float(high)]


def arm_entry(cells: list[list[dict]]) -> dict:
    """cells[cohort][seed] → one results.json arm: per-cohort means over the seeds."""
    def per_cohort(part, metric="mse"):
        return [float(np.mean([s[part][metric] for s in seeds])) for seeds in cells]
    return {"test_mse": per_cohort("all"), "test_mse_original": per_cohort("original"),
            "test_mse_added": per_cohort("added"), "test_patient_mse": per_cohort("all", "patient_mse"),
            "val_mse": [float(np.mean([s["val_mse"] for s in seeds])) for seeds in cells],
            "test_mse_per_seed": [[s["all"]["mse"] for s in seeds] for seeds in cells]}


def training_machine(run: Path):
    """Where the folder's trainings ran, as its results.json says (the re-reading does not change it)."""
    path = run / "results.json"
    return json.loads(path.read_text()).get("machine") if path.is_file() else None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--test-patients", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cohorts", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS))
    ap.add_argument("--cache-dir", default=None, help="phantom render cache (default: a temporary folder)")
    args = ap.parse_args(argv)
    run = Path(args.run_dir)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cache, data_cache = args.cache_dir or tmp, {}
        cells = {arm: [[None] * args.seeds for _ in range(args.cohorts)] for arm in args.arms}
        for c in range(args.cohorts):
            for s in range(args.seeds):
                for arm in args.arms:
                    cell = evaluate_cell(cohort_dir_of(run, c, s) / arm, args.test_patients, cache, data_cache)
                    cells[arm][c][s] = cell
                    print(f"cohort {c} seed {s} {arm:16s} test MSE {cell['original']['mse']:.1f} on the original "
                          f"{cell['original']['n_patients']} patients, {cell['added']['mse']:.1f} on the "
                          f"{cell['added']['n_patients']} added, {cell['all']['mse']:.1f} on all", flush=True)
    arms = {arm: arm_entry(cells[arm]) for arm in args.arms}
    n_original = cells[args.arms[0]][0][0]["n_original"]
    for arm in args.arms:
        if not arm.startswith(("PURE-", "ORACLE-")):
            interval = test_patient_interval(cells, arm), test_patient_interval(cells, arm, first=n_original)
            if interval[0] is not None:
                arms[arm]["gap_closed_test_patient_interval"] = {"all": interval[0], "original": interval[1]}
    comparison = compare(arms)
    results = {"cohorts": list(range(args.cohorts)), "seeds": args.seeds, "test_patients": args.test_patients,
               "run_dir": run.name, "machine": training_machine(run), "arms": arms, "comparison": comparison,
               "verdict": verdict(arms, comparison, args.cohorts), "date": time.strftime("%Y-%m-%d"),
               "seconds": round(time.perf_counter() - start, 1)}
    write_json(Path(args.out), results)
    print(results["verdict"])


if __name__ == "__main__":
    main()
