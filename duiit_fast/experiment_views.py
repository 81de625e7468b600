"""Views of finished experiments, with the experiment's own comparison (gap share and its interval,
paired t-test and Wilcoxon) and verdict, never edited numbers:

* restate: one results.json over some of its cohorts (a replication's added cohorts alone);
* re-read: a folder's trainings read on more test patients (the phantom draws patients in sequence,
  so a larger test set appends patients and leaves training, validation and the first test
  patients as they were); each cell's predictor must first reproduce its recorded test MSE;
* compose: arms taken from several runs of the same protocol into one results.json (when a change
  of the defaults re-evaluated some arms and left the others' trainings as they were).

`duiit experiment --out VIEW --from RUN --cohort-ids 5-14`, `... --from RUN --test-patients 200` and
`... --compose SOURCE ARM [ARM ...] [--compose ...]` write VIEW/results.json and its report.
"""
from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from .arms import REFERENCE_ARM, is_bound, oracle_arm
from .config import TrainConfig, leaf_fields
from .errors import DuiitConfigError
from .eval.experiment_report import (GAP_INTERVAL, MAX_COHORT_ID, cohort_dir_of, cohort_list, collect_results, compare,
                                     source_of, verdict,
                                     write_report)
from .io import write_json

# The recorded MSE and its recomputation on the same patients may differ in the last bits only
# (the slices are batched differently at inference).
REPRODUCTION_TOLERANCE = 1e-4   # relative
# Fields composed runs may differ in: where files lived and the evaluation statistic (checked per arm).
FREE_FIELDS = {"out_dir", "cache_dir", "predictor_bn_stats"}


def parse_cohorts(text: str) -> list[int]:
    """'5-14' or '0,2,4' (or a mix: '0-2,7') as a sorted list of cohort ids."""
    ids = set()
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            low, high = int(low), int(high or low)
            if not 0 <= low <= high <= MAX_COHORT_ID:
                raise ValueError
            ids.update(range(low, high + 1))
    except ValueError:
        raise DuiitConfigError(f"cohorts {text[:40]!r}: expected ids like 5-14 or 0,2,4 "
                               f"(each range A ≤ B, ids 0–{MAX_COHORT_ID})") from None
    return sorted(ids)


def _view(results: dict, arms: dict, cohorts: list) -> dict:
    comparison = compare(arms)
    view = {k: v for k, v in results.items() if k not in ("arms", "comparison", "verdict")}
    view.update({"cohorts": cohorts, "arms": arms, "comparison": comparison,
                 "verdict": verdict(arms, comparison, len(cohorts))})
    view.pop("wall_seconds_this_invocation", None)   # the run's, not the view's
    return view


def restate(results: dict, keep: list[int]) -> dict:
    """results over the cohorts `keep`: every per-cohort list cut to them, the tests recomputed."""
    cohorts = list(results["cohorts"])
    missing = [c for c in keep if c not in cohorts]
    if missing:
        raise DuiitConfigError(f"cohorts {missing} are not in this results.json (it has {cohorts})")
    rows = [cohorts.index(c) for c in keep]
    arms = {arm: {key: [value[i] for i in rows] if isinstance(value, list) and len(value) == len(cohorts) else value
                  for key, value in entry.items()} for arm, entry in results["arms"].items()}
    return _view(results, arms, keep)


# -- re-read on more test patients ---------------------------------------------------------------

def _ct_data(cfg: TrainConfig):
    from .train.data import TrainingData, load_training_data
    data = load_training_data(dataclasses.replace(cfg, setting="PURE-CT"))
    return TrainingData(data.ct_train, data.ct_val, data.ct_test)


def reread_cell(cell_dir: Path, test_patients: int, cache_dir: str, data_cache: dict) -> dict:
    from .eval.evaluate import patient_squared_errors, regression_metrics
    from .train.checkpoint import read_checkpoint
    from .train.schema import check_run_checkpoint
    from .train.trainer import Trainer
    recorded = json.loads((cell_dir / "result.json").read_text())
    state = read_checkpoint(cell_dir / "checkpoint.pt")
    saved = check_run_checkpoint(state, cell_dir / "checkpoint.pt")
    if test_patients < saved.phantom.ct_test_patients:
        raise DuiitConfigError(f"--test-patients {test_patients} is below the experiment's {saved.phantom.ct_test_patients}")
    cfg = dataclasses.replace(saved, cache_dir=cache_dir,
                              phantom=dataclasses.replace(saved.phantom, ct_test_patients=test_patients))
    key = (cfg.phantom.seed, test_patients)
    if key not in data_cache:
        data_cache.clear()
        data_cache[key] = _ct_data(cfg)
    data = data_cache[key]
    trainer = Trainer(cfg, data=data, progress=False, check_paths=False)
    trainer.restore(state)
    trainer.use_selected_predictor()
    test = data.ct_test
    pred = trainer.predict(test.images)
    original, added = test.patients[:saved.phantom.ct_test_patients], test.patients[saved.phantom.ct_test_patients:]
    on_original = regression_metrics(pred[np.isin(test.patient_ids, original)], test.select_patients(original))
    if abs(on_original["mse"] - recorded["test"]["mse"]) > REPRODUCTION_TOLERANCE * recorded["test"]["mse"]:
        raise DuiitConfigError(f"{cell_dir}: the original test patients give MSE {on_original['mse']!r}, the cell "
                               f"recorded {recorded['test']['mse']!r}: not the recorded predictor or patients")
    errors, slices = patient_squared_errors(pred, test)
    return {"all": regression_metrics(pred, test), "original": on_original, "patient_sq_errors": errors,
            "patient_slices": slices, "n_original": len(original),
            "added": regression_metrics(pred[np.isin(test.patient_ids, added)], test.select_patients(added)),
            "val_mse": recorded["val"]["mse"]}


def test_patient_interval(cells: dict, arm: str, first: int | None = None, draws: int = 2000, seed: int = 0):
    """90 % percentile interval of the arm's gap share when only the test patients are redrawn (each
    cohort's first `first`, or all, with replacement, the same for every arm and seed): how much of the
    share is the luck of the test set. None without PURE-CT and the arm's ORACLE."""
    oracle = oracle_arm(source_of(arm))
    if REFERENCE_ARM not in cells or oracle not in cells:
        return None
    rng = np.random.default_rng(seed)
    n_cohorts = len(cells[arm])
    means = {a: np.zeros(draws) for a in (REFERENCE_ARM, oracle, arm)}
    for c in range(n_cohorts):
        n = first or len(cells[arm][c][0]["patient_sq_errors"])
        picks = rng.integers(0, n, size=(draws, n))
        for a in means:
            for run in cells[a][c]:
                err = np.asarray(run["patient_sq_errors"][:n]) * np.asarray(run["patient_slices"][:n])
                slices = np.asarray(run["patient_slices"][:n], float)
                means[a] += err[picks].sum(1) / slices[picks].sum(1) / (n_cohorts * len(cells[a][c]))
    p, o, m = means[REFERENCE_ARM], means[oracle], means[arm]
    low, high = np.percentile((p - m) / (p - o), GAP_INTERVAL)
    return [float(low), float(high)]


def _reread_entry(cells: list) -> dict:
    """cells[cohort][seed] → one results.json arm: per-cohort means over the seeds."""
    def per_cohort(part, metric="mse"):
        return [float(np.mean([s[part][metric] for s in seeds])) for seeds in cells]
    return {"test_mse": per_cohort("all"), "test_mse_original": per_cohort("original"),
            "test_mse_added": per_cohort("added"), "test_patient_mse": per_cohort("all", "patient_mse"),
            "val_mse": [float(np.mean([s["val_mse"] for s in seeds])) for seeds in cells],
            "test_mse_per_seed": [[s["all"]["mse"] for s in seeds] for seeds in cells]}


def reread(run: Path, test_patients: int, log=print) -> dict:
    """The folder's trainings (every cohort, seed and arm of its results.json) on `test_patients`."""
    finished = json.loads((run / "results.json").read_text())
    arm_names, seeds, n_cohorts = list(finished["arms"]), finished.get("seeds", 1), len(finished["cohorts"])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        data_cache: dict = {}
        cells = {arm: [[None] * seeds for _ in range(n_cohorts)] for arm in arm_names}
        for c in range(n_cohorts):
            for s in range(seeds):
                for arm in arm_names:
                    cell = reread_cell(cohort_dir_of(run, c, s) / arm, test_patients, cache, data_cache)
                    cells[arm][c][s] = cell
                    log(f"cohort {c} seed {s} {arm}: test MSE {cell['original']['mse']:.1f} on the original "
                        f"{cell['original']['n_patients']} patients, {cell['all']['mse']:.1f} on all {test_patients}")
    arms = {arm: _reread_entry(cells[arm]) for arm in arm_names}
    n_original = cells[arm_names[0]][0][0]["n_original"]
    for arm in arm_names:
        if not is_bound(arm):
            both = test_patient_interval(cells, arm), test_patient_interval(cells, arm, first=n_original)
            if both[0] is not None:
                arms[arm]["gap_closed_test_patient_interval"] = {"all": both[0], "original": both[1]}
    view = _view({"seeds": seeds, "machine": finished.get("machine"), "config": finished["config"]}, arms,
                 list(range(n_cohorts)))
    view.update({"test_patients": test_patients, "run_dir": run.name, "date": time.strftime("%Y-%m-%d"),
                 "seconds": round(time.perf_counter() - start, 1)})
    return view


# -- compose ---------------------------------------------------------------------------------------

def _check_protocol(config: dict, source: str, fast_path: str, today: TrainConfig) -> TrainConfig:
    defaults = leaf_fields(json.loads(json.dumps(today.to_dict())))
    saved = {k: v for k, v in leaf_fields(config).items() if k not in FREE_FIELDS}
    if saved.get("fast.precision") == "bf16" and ", bf16," in fast_path:   # what "auto" picked on that CPU
        saved["fast.precision"] = defaults["fast.precision"]
    differ = [k for k, v in saved.items() if k in defaults and defaults[k] != v]
    if differ:
        raise DuiitConfigError(f"{source}: not this experiment's protocol ({', '.join(differ)} differ)")
    return TrainConfig.from_dict(config)


def _check_statistic(cfg: TrainConfig, arm: str, source: str, today: TrainConfig) -> str:
    used = dataclasses.replace(cfg, setting=arm).bn_stats
    wanted = dataclasses.replace(today, setting=arm).bn_stats
    if used != wanted:
        raise DuiitConfigError(f"{source}: {arm} was evaluated with {used}, this protocol uses {wanted}")
    return used


def compose(sources: list, cohorts, seeds: int, today: TrainConfig) -> dict:
    """sources: [(results.json or experiment folder, [arms])]; every arm run with `today`'s protocol;
    cohorts: N (the first N) or the list of ids."""
    cohorts = cohort_list(cohorts)
    arms, described = {}, []
    for source, names in sources:
        path = Path(source)
        if path.is_dir():
            fast_path = json.loads((path / "results.json").read_text()).get("fast_path", "")
            cfg = _check_protocol(json.loads((path / "experiment.json").read_text())["config"], source, fast_path, today)
            for arm in names:
                _check_statistic(cfg, arm, source, today)
            arms.update(collect_results(path, cohorts, names, cfg, seeds)["arms"])
        else:
            run = json.loads(path.read_text())
            if list(run["cohorts"]) != cohorts or run.get("seeds", 1) != seeds:
                raise DuiitConfigError(f"{source}: cohorts {run['cohorts']} × {run.get('seeds', 1)} seeds, "
                                       f"not {cohorts} × {seeds}")
            cfg = _check_protocol(run["config"], source, run.get("fast_path", ""), today)
            arms.update({arm: {**run["arms"][arm], "bn_stats": _check_statistic(cfg, arm, source, today)}
                         for arm in names})
        described.append({"folder" if path.is_dir() else "results": source, "arms": list(names)})
    view = _view({"seeds": seeds, "config": today.to_dict()}, arms, cohorts)
    view.update({"composed_from": described, "date": time.strftime("%Y-%m-%d")})
    return view


def write_view(out, view: dict, log=print) -> None:
    """OUT/results.json, report.md and the bar plot, swapped in complete (OUT must be new or empty)."""
    from .io import staged_folder
    with staged_folder(out) as stage:
        write_json(stage / "results.json", view)
        write_report(stage, view, lambda *a: None)
    log(view["verdict"])
    log(f"wrote {Path(out) / 'results.json'}, {Path(out) / 'report.md'}")
