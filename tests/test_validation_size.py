"""bench/validation_size.py: the epoch chosen on k validation patients, scored on the others."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_BENCH = Path(__file__).parents[1] / "bench"
_SPEC = importlib.util.spec_from_file_location("validation_size", _BENCH / "validation_size.py")
validation_size = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(validation_size)


def test_last_epoch_without_a_choice_is_slice_weighted():
    errors = np.array([[1.0, 1.0, 1.0], [10.0, 40.0, 70.0]])   # epochs × patients
    slices = np.array([1.0, 1.0, 2.0])
    got = validation_size.chosen_epoch_mse(errors, slices, 0, 10, np.random.default_rng(0))
    assert got == pytest.approx((10 + 40 + 2 * 70) / 4)


def test_a_choice_all_patients_agree_on_scores_that_epoch_on_the_others():
    errors = np.array([[30.0, 31.0, 32.0, 33.0], [10.0, 10.0, 10.0, 10.0], [20.0, 25.0, 30.0, 35.0]])
    slices = np.ones(4)
    for k in (1, 2, 3):
        assert validation_size.chosen_epoch_mse(errors, slices, k, 50, np.random.default_rng(k)) == pytest.approx(10.0)


def test_a_choice_on_one_patient_is_scored_on_the_other_not_on_itself():
    # Patient 0 prefers epoch 0 (0 < 50), where patient 1 errs by 100; patient 1 prefers epoch 1 (50 < 100),
    # where patient 0 errs by 50. Held-out: 100 or 50, each half the time. Scored on itself it would be 0 or 50.
    errors = np.array([[0.0, 100.0], [50.0, 50.0]])
    got = validation_size.chosen_epoch_mse(errors, np.ones(2), 1, 4000, np.random.default_rng(0))
    assert got == pytest.approx(75.0, abs=3.0)


def test_loading_the_script_leaves_sys_path_alone():
    # bench/ holds its own conftest.py: on sys.path it would shadow tests/conftest.py in spawned ranks.
    assert str(_BENCH) not in sys.path
