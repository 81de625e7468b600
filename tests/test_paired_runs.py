"""bench/paired_runs.py: the comparison issue 9's sweeps decide by, paired by cohort and training seed."""
import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("scipy")
_SPEC = importlib.util.spec_from_file_location("paired_runs", Path(__file__).parents[1] / "bench" / "paired_runs.py")
paired_runs = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(paired_runs)


def _cell(folder: Path, cohort: int, seed: int, arm: str, test: float, crossfit=None):
    where = folder / f"cohort-{cohort}" / (f"seed-{seed}/" if seed else "") / arm
    where.mkdir(parents=True)
    result = {"test": {"mse": test}, "val": {"mse": test - 1}}
    if crossfit is not None:
        result["val_crossfit_mse"] = crossfit
    (where / "result.json").write_text(json.dumps(result))


def test_cohorts_average_the_seeds_both_folders_finished(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for seed, (x, y) in enumerate([(50.0, 40.0), (60.0, 58.0), (70.0, 0.0)]):
        _cell(a, 0, seed, "MIX-CT-MRI", x, crossfit=x + 5)
        if seed < 2:                       # B stopped before the third seed: A's third is left out
            _cell(b, 0, seed, "MIX-CT-MRI", y, crossfit=y + 5)
    _cell(a, 1, 0, "MIX-CT-MRI", 30.0)      # no cross-fitted number (cells before commit 3007ebc)
    _cell(b, 1, 0, "MIX-CT-MRI", 35.0)
    cells_a, cells_b = paired_runs.finished_cells(a), paired_runs.finished_cells(b)
    assert sorted(cells_a["MIX-CT-MRI"][0]) == [0, 1, 2]

    test = paired_runs.paired(cells_a, cells_b, "test")["MIX-CT-MRI"]
    assert test["cohorts"] == [0, 1] and test["seeds"] == [2, 1]
    assert test["a"] == [55.0, 30.0] and test["b"] == [49.0, 35.0]
    assert test["mean_diff"] == pytest.approx(-0.5) and test["b_lower"] == 1

    crossfit = paired_runs.paired(cells_a, cells_b, "val_crossfit")["MIX-CT-MRI"]
    assert crossfit["cohorts"] == [0] and crossfit["a"] == [60.0] and crossfit["b"] == [54.0]
