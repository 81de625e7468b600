"""The record reproduces: `duiit experiment` on cohort 0 gives the recorded cells to the digit (test
and validation MSE, the chosen epoch, the label-cue slope of every arm), on a CPU with native bf16
like the record's (another CPU rounds bf16 differently and the GAN arms follow). About 10 minutes on
2 cores: marked slow, run before a change to training lands (`pytest -m slow tests/test_record.py`)."""
import json
from pathlib import Path

import pytest

from duiit_fast.cli import main
from duiit_fast.train.fast import cpu_features

RECORD = Path(__file__).parent / "fixtures" / "record" / "results.json"   # docs/experiment/results.json
KEYS = ("test_mse", "val_mse", "val_mse_crossfit", "selected_epoch")
# The label-cue slope is a float64 fit whose last bit follows the BLAS's summation order (one ulp
# apart between a Zen 4 and the record's Zen 5); everything the networks computed is exact.
FITTED = ("reader_slope", "pixel_l1")


@pytest.mark.slow
@pytest.mark.skipif("native bf16" not in cpu_features(), reason="the record ran in bf16 on a CPU with native bf16")
def test_cohort_0_of_the_record_to_the_digit(tmp_path):
    assert main(["experiment", "--cohorts", "1", "--out", str(tmp_path), "--workers", "2"]) == 0
    again = json.loads((tmp_path / "results.json").read_text())["arms"]
    recorded = json.loads(RECORD.read_text())["arms"]
    assert list(again) == list(recorded)
    for arm, cells in recorded.items():
        for key in KEYS:
            if key in cells:
                assert again[arm][key][0] == cells[key][0], f"{arm} {key}: {again[arm][key][0]} != {cells[key][0]}"
        for key in FITTED:
            if key in cells:
                assert again[arm][key][0] == pytest.approx(cells[key][0], rel=1e-12, abs=0)
