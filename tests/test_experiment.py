"""`duiit experiment` end to end at the smallest size: cells, results.json, report, resume."""
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import replaced

from duiit_fast.cli import main
from duiit_fast.errors import DuiitConfigError
from duiit_fast.eval.experiment_report import compare, paired_tests
from duiit_fast.experiment import run_experiment
from duiit_fast.train.fast import cpu_features

ARMS = ["PURE-CT", "CYCLEGAN-CT-MRI", "MIX-CT-MRI"]


@pytest.fixture
def tiny_base(tiny_config):
    return tiny_config(translator_warmup_steps=2, epochs=2, steps_per_epoch=2, num_threads=1)


def test_experiment_writes_results_report_and_resumes(tmp_path, tiny_base):
    logs = []
    results = run_experiment(tmp_path, cohorts=2, arms=ARMS, workers=2, base=tiny_base, log=logs.append)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert list(saved["arms"]) == ARMS
    for arm in ARMS:
        entry = saved["arms"][arm]
        assert len(entry["test_mse"]) == 2 and len(entry["val_mse"]) == 2
        assert entry["test_mse"] == results["arms"][arm]["test_mse"]
        cell = json.loads((tmp_path / "cohort-1" / arm / "result.json").read_text())
        assert cell["test"]["mse"] == entry["test_mse"][1]
        # Never below the chosen epoch's validation MSE (docs of cross_fitted_val_mse).
        assert entry["val_mse_crossfit"][1] == cell["val_crossfit_mse"] >= min(
            r["val_mse"] for r in cell["history"]) * (1 - 1e-6)   # the history's MSE is a float32 sum
    assert "reader_slope" in saved["arms"]["MIX-CT-MRI"] and "grad_share_last_epoch" in saved["arms"]["MIX-CT-MRI"]
    # The translator arms of one cohort start from the same shared warm-up.
    assert (tmp_path / "cohort-0" / "warmup" / "checkpoint.pt").is_file()
    # Every job read the cohort's phantom from one shared cache, removed once all jobs were done.
    spec = json.loads((tmp_path / "cohort-1" / "PURE-CT" / ".result-job.json").read_text())
    assert spec["config"]["cache_dir"] == str(tmp_path / ".phantom-cache")
    assert not (tmp_path / ".phantom-cache").exists()
    report = (tmp_path / "report.md").read_text()
    assert "Paired tests over cohorts" in report and "Verdict over 2 cohort(s)" in report
    assert "Where the test error comes from" in report and "val MSE, cross-fitted" in report
    assert all(saved["arms"][arm]["bn_stats"] == "real_ct" for arm in ARMS)   # tiny_base: TrainConfig's default
    assert ("P's BatchNorm statistics at evaluation: re-estimated on the real training CT "
            f"({', '.join(ARMS)})") in report
    assert len(saved["arms"]["PURE-CT"]["test_scatter"]) == 2
    assert f"{np.mean(entry['test_mse']):.1f}" in report
    # Where it ran and what "auto" became there: runs on other CPUs round differently.
    assert saved["fast_path"] == "eager, fp32, NCHW, fused Adam, auto ops"   # tiny_base pins fp32
    assert cpu_features() in saved["machine"] and f"Ran on {saved['machine']}: {saved['fast_path']}" in report
    for png in ("test_mse.png", "translations-MIX-CT-MRI.png", "translations-CYCLEGAN-CT-MRI.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    # A rerun finds every cell done and only re-renders the report.
    logs.clear()
    again = run_experiment(tmp_path, cohorts=2, arms=ARMS, workers=2, base=tiny_base, log=logs.append)
    assert logs[0].startswith("8 of 8 jobs already done")
    assert again["arms"] == results["arms"]
    with pytest.raises(DuiitConfigError, match="another configuration"):
        run_experiment(tmp_path, cohorts=2, arms=ARMS, base=tiny_base.__class__(**{
            **tiny_base.__dict__, "epochs": 3}), log=logs.append)


def test_named_cohorts_run_fresh_patients_and_extend_a_folder(tmp_path, tiny_base, capsys):
    """--cohorts A-B names the cohorts (fresh ids are fresh patients, no folder copying); a folder that
    ran some cohorts continues with more, reusing the finished cells."""
    arms = ["PURE-CT"]
    first = run_experiment(tmp_path, cohorts=[7], arms=arms, workers=1, base=tiny_base, log=lambda m: None)
    assert first["cohorts"] == [7] and not (tmp_path / "cohort-0").exists()
    spec = json.loads((tmp_path / "cohort-7" / "PURE-CT" / ".result-job.json").read_text())["config"]
    assert (spec["seed"], spec["split_seed"], spec["phantom"]["seed"]) == (7, 7, 7)
    logs = []
    both = run_experiment(tmp_path, cohorts=[7, 8], arms=arms, workers=1, base=tiny_base, log=logs.append)
    assert logs[0].startswith("1 of 2 jobs already done") and both["cohorts"] == [7, 8]
    assert both["arms"]["PURE-CT"]["test_mse"][0] == first["arms"]["PURE-CT"]["test_mse"][0]
    assert "Phantom cohorts [7, 8]" in (tmp_path / "report.md").read_text()
    from duiit_fast.cli.train import _cohorts
    assert _cohorts("5") == 5 and _cohorts("40-42") == [40, 41, 42] and _cohorts("1,3-4") == [1, 3, 4]
    for bad in (["--cohorts", "9-3"], ["--cohorts", "0-5000"]):
        with pytest.raises(SystemExit) as exited:   # argparse's refusal, in the one-line form
            main(["experiment", "--out", str(tmp_path / "x"), *bad])
        assert exited.value.code == 2 and "expected N, A-B or ids" in capsys.readouterr().err


def test_training_seeds_extend_a_run_and_cells_become_their_mean(tmp_path, tiny_base):
    arms = ["PURE-CT", "MIX-CT-MRI"]
    one = run_experiment(tmp_path, cohorts=1, arms=arms, workers=2, base=tiny_base, log=lambda m: None)
    logs = []
    two = run_experiment(tmp_path, cohorts=1, arms=arms, workers=2, base=tiny_base, log=logs.append, seeds=2)
    assert logs[0].startswith("3 of 6 jobs already done")   # the one-seed run's cells are seed 0
    second = tmp_path / "cohort-0" / "seed-1"
    spec = json.loads((second / "MIX-CT-MRI" / ".result-job.json").read_text())["config"]
    # The same patients and split, another training: seed c + 1000.
    assert (spec["seed"], spec["split_seed"], spec["phantom"]["seed"]) == (1000, 0, 0)
    assert (second / "warmup" / "checkpoint.pt").is_file()
    for arm in arms:
        first = json.loads((tmp_path / "cohort-0" / arm / "result.json").read_text())
        other = json.loads((second / arm / "result.json").read_text())
        assert one["arms"][arm]["test_mse"] == [first["test"]["mse"]]
        assert two["arms"][arm]["test_mse_per_seed"] == [[first["test"]["mse"], other["test"]["mse"]]]
        assert first["test"]["mse"] != other["test"]["mse"]
        assert two["arms"][arm]["test_mse"][0] == pytest.approx((first["test"]["mse"] + other["test"]["mse"]) / 2)
        assert two["arms"][arm]["val_mse"][0] == pytest.approx((first["val"]["mse"] + other["val"]["mse"]) / 2)
    cues = [json.loads((d / "MIX-CT-MRI" / "result.json").read_text())["label_cues"]["reader_slope"]
            for d in (tmp_path / "cohort-0", second)]
    assert two["arms"]["MIX-CT-MRI"]["reader_slope"] == [pytest.approx(sum(cues) / 2)]
    report = (tmp_path / "report.md").read_text()
    assert "2 training seeds" in report and "per training seed in brackets" in report
    assert json.loads((tmp_path / "results.json").read_text())["seeds"] == 2


def test_experiment_cli_rejects_bad_arguments(tmp_path, capsys):
    assert main(["experiment", "--out", str(tmp_path), "--cohorts", "0"]) == 2
    assert main(["experiment", "--out", str(tmp_path), "--arms", "MIX-CT-XRAY"]) == 2
    assert main(["experiment", "--out", str(tmp_path), "--arms", "MIX-CT-MRI@psychic"]) == 2
    assert main(["experiment", "--out", str(tmp_path), "--seeds", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("duiit: error:") for line in err)


def test_set_changes_the_experiment_configuration_with_typed_values():
    from duiit_fast.experiment import experiment_config
    cfg = experiment_config().with_settings(["lambda_pred=4e-3", "translator_warmup_steps = 800",
                                             "phantom.source_patients=20", "pred_feedback=ct_reader"])
    assert (cfg.lambda_pred, cfg.translator_warmup_steps, cfg.pred_feedback) == (4e-3, 800, "ct_reader")
    assert cfg.phantom.source_patients == 20 and cfg.ngf == experiment_config().ngf
    for bad, message in [("lambda_pred", "KEY=VALUE"), ("lambda_prd=1", "unknown field"),
                         ("epochs=many", "epochs"), ("model.ngf=8", "unknown table"),
                         ("translator_warmup_steps=-1", "must lie in")]:
        with pytest.raises(DuiitConfigError, match=message):
            experiment_config().with_settings([bad])


def test_experiment_cli_set_errors_are_one_line(tmp_path, capsys):
    assert main(["experiment", "--out", str(tmp_path), "--set", "lambda_pred=big"]) == 2
    assert main(["experiment", "--out", str(tmp_path), "--set", "nonsense"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("duiit: error:") for line in err)
    assert not (tmp_path / "experiment.json").exists()   # nothing ran, nothing written


def test_paired_tests_match_scipy_and_gap_closed():
    from scipy import stats
    a, b = [30.0, 41.0, 35.0, 50.0, 44.0], [52.0, 58.0, 49.0, 61.0, 47.0]
    t = paired_tests(a, b)
    assert t["t_p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert t["wilcoxon_p"] == pytest.approx(0.0625) and t["mean_difference"] == pytest.approx(-13.4)
    arms = {"PURE-CT": {"test_mse": [100.0, 80.0]}, "ORACLE-CT-MRI": {"test_mse": [50.0, 40.0]},
            "MIX-CT-MRI": {"test_mse": [75.0, 60.0]}}
    assert compare(arms)["MIX-CT-MRI"]["gap_closed"] == pytest.approx(0.5)
    assert compare(arms)["MIX-CT-MRI"]["gap_closed_per_cohort"] == pytest.approx([0.5, 0.5])


def test_gap_interval_resamples_cohorts_and_seeds_with_the_arms_paired():
    from duiit_fast.eval.experiment_report import gap_closed_interval, verdict
    pure = [[100.0, 90.0], [80.0, 70.0], [60.0, 66.0]]
    oracle = [[50.0, 40.0], [40.0, 30.0], [30.0, 35.0]]
    half = [[(p + o) / 2 for p, o in zip(ps, os)] for ps, os in zip(pure, oracle)]
    # Halfway in every cell: every draw, paired across the three arms, gives exactly half the gap.
    assert gap_closed_interval(pure, oracle, half) == pytest.approx([0.5, 0.5])
    # Seeds that disagree within cohorts that agree: the cohort means alone show no spread, the seeds do.
    seedy = [[60.0, 90.0]] * 3
    flat_p, flat_o = [[100.0, 100.0]] * 3, [[40.0, 40.0]] * 3
    assert gap_closed_interval([[100.0]] * 3, [[40.0]] * 3, [[75.0]] * 3) == pytest.approx([5 / 12, 5 / 12])
    low, high = gap_closed_interval(flat_p, flat_o, seedy)
    assert low < 5 / 12 < high and low >= 1 / 6 - 1e-9 and high <= 2 / 3 + 1e-9   # seed 90 → 1/6, seed 60 → 2/3
    assert gap_closed_interval([[100.0]], [[40.0]], [[75.0]]) is None   # one cohort: nothing to resample
    arms = {"PURE-CT": {"test_mse": [95.0, 75.0, 63.0], "test_mse_per_seed": pure},
            "ORACLE-CT-MRI": {"test_mse": [45.0, 35.0, 32.5], "test_mse_per_seed": oracle},
            "MIX-CT-MRI": {"test_mse": [70.0, 55.0, 47.75], "test_mse_per_seed": half}}
    comp = compare(arms)
    assert comp["MIX-CT-MRI"]["gap_closed"] == pytest.approx(0.5)
    assert comp["MIX-CT-MRI"]["gap_closed_interval"] == pytest.approx([0.5, 0.5])
    assert "gap_closed_interval" not in comp["PURE-CT"] and "gap_closed_interval" not in comp["ORACLE-CT-MRI"]
    assert "closes 50% (90% interval 50 to 50%) of the PURE→ORACLE gap" in verdict(arms, comp, 3)


def test_all_arms_expand_and_the_baselines_run_as_cells(tmp_path, tiny_base):
    from duiit_fast.arms import ALL_ARMS
    from duiit_fast.experiment import expand_arms
    assert expand_arms(["PURE-CT", "all"]) == list(ALL_ARMS)
    arms = ["PURE-CT", "TL-CT-MRI", "MTL-CT-MRI", "DANN-CT-MRI", "AUG-AUTO"]
    results = run_experiment(tmp_path, cohorts=1, arms=arms, workers=2, base=tiny_base, log=lambda m: None)
    assert list(results["arms"]) == arms and all(len(e["test_mse"]) == 1 for e in results["arms"].values())
    assert not (tmp_path / "cohort-0" / "warmup").exists()   # no translator arm: no shared warm-up job


def test_pet_arms_share_a_warm_up_per_source_set(tmp_path, tiny_base):
    """PET and MRI+PET translator arms get their own readers and warm-up; MRI keeps the recorded names."""
    from duiit_fast.experiment import plan_jobs
    arms = ["MIX-CT-MRI", "MIX-CT-PET", "CYCLEGAN-CT-PET", "TL-CT-PET", "MIX-CT-MRI-PET"]
    jobs = {j.name: j for j in plan_jobs(tiny_base, tmp_path, 1, arms)}
    assert {j.done_file.name for j in jobs.values() if j.spec["kind"] == "prepare"} == \
        {"prepared", "prepared-pet", "prepared-mri-pet"}
    assert jobs["cohort 0: CYCLEGAN-CT-PET"].needs == jobs["cohort 0: MIX-CT-PET"].needs != \
        jobs["cohort 0: MIX-CT-MRI"].needs
    assert jobs["cohort 0: TL-CT-PET"].needs == ()
    results = run_experiment(tmp_path, cohorts=1, arms=arms[1:], workers=2, base=tiny_base, log=lambda m: None)
    cohort = tmp_path / "cohort-0"
    for tag in ("-pet", "-mri-pet"):
        assert (cohort / f"warmup{tag}" / "checkpoint.pt").is_file() and (cohort / f"readers{tag}.pt").is_file()
    assert not (cohort / "warmup").exists()
    assert "reader_slope" in results["arms"]["MIX-CT-PET"]
    assert "mri_reader_slope" in results["arms"]["MIX-CT-MRI-PET"]
    assert (tmp_path / "translations-MIX-CT-PET.png").is_file()
    report = (tmp_path / "report.md").read_text()
    assert "### Table 3 analogue" in report and "PET → CT" in report


def test_a_field_added_after_the_run_at_its_default_is_the_same_protocol(tmp_path, tiny_base):
    import dataclasses
    from duiit_fast.experiment import _check_same_protocol
    from duiit_fast.io import write_json
    tiny_base = replaced(tiny_base, precision="auto")   # the field at its default
    saved = json.loads(json.dumps(tiny_base.to_dict()))
    del saved["fast"]["precision"]                           # as written before the field existed
    write_json(tmp_path / "experiment.json", {"config": saved})
    _check_same_protocol(tmp_path / "experiment.json", tiny_base)
    flat = json.loads(json.dumps(tiny_base.to_dict()))       # as written before the [fast] table
    flat.update(flat.pop("fast"))
    write_json(tmp_path / "experiment.json", {"config": flat})
    _check_same_protocol(tmp_path / "experiment.json", tiny_base)
    with pytest.raises(DuiitConfigError, match="another configuration"):
        _check_same_protocol(tmp_path / "experiment.json", replaced(tiny_base, precision="bf16"))
    with pytest.raises(DuiitConfigError, match="another configuration"):
        _check_same_protocol(tmp_path / "experiment.json", dataclasses.replace(tiny_base, epochs=9))


def test_pet_arms_are_tested_against_the_references_of_their_source():
    arms = {"PURE-CT": {"test_mse": [100.0, 80.0, 90.0]}, "ORACLE-CT-MRI": {"test_mse": [50.0, 40.0, 45.0]},
            "NAIVE-CT-MRI": {"test_mse": [95.0, 85.0, 90.0]}, "NAIVE-CT-PET": {"test_mse": [99.0, 83.0, 91.0]},
            "MIX-CT-PET": {"test_mse": [75.0, 60.0, 70.0]}, "MIX-CT-MRI": {"test_mse": [75.0, 60.0, 70.0]}}
    comp = compare(arms)
    assert set(comp["MIX-CT-PET"]) == {"vs PURE-CT", "vs NAIVE-CT-PET"}   # no PET oracle: no gap
    assert "vs NAIVE-CT-MRI" in comp["MIX-CT-MRI"] and "gap_closed" in comp["MIX-CT-MRI"]


def test_error_parts_add_up_to_the_mse():
    import torch
    from duiit_fast.eval.evaluate import error_parts
    g = torch.Generator().manual_seed(0)
    ages = 50 + 15 * torch.randn(300, generator=g)
    pred = 0.7 * ages + 12 + 5 * torch.randn(300, generator=g)
    parts = error_parts(pred, ages)
    mse = float((pred - ages).double().square().mean())
    var = float(ages.double().var(unbiased=False))
    assert parts["bias"] ** 2 + (1 - parts["slope"]) ** 2 * var + parts["scatter"] ** 2 == pytest.approx(mse, rel=1e-9)
    assert parts["slope"] == pytest.approx(0.7, abs=0.05) and parts["scatter"] == pytest.approx(5.0, abs=0.6)
    # Perfect predictions: slope 1, no bias, no scatter; constant ages: no line to fit.
    assert error_parts(ages, ages) == pytest.approx({"slope": 1.0, "bias": 0.0, "scatter": 0.0}, abs=1e-9)
    assert error_parts(pred[:4], torch.full((4,), 60.0))["slope"] is None


def test_each_arm_is_evaluated_with_its_own_chosen_statistic_unless_one_is_set(tmp_path):
    from duiit_fast.eval.experiment_report import _bn_stats_text
    from duiit_fast.arms import DEFAULT_ARMS
    from duiit_fast.experiment import experiment_config, plan_jobs
    from duiit_fast.config import TrainConfig
    base = experiment_config(quick=True)
    assert base.predictor_bn_stats == "by_setting"
    cells = {j.name.split(": ")[1]: TrainConfig.from_dict(j.spec["config"])
             for j in plan_jobs(base, tmp_path, 1, DEFAULT_ARMS) if j.spec["kind"] == "arm"}
    assert {arm: cfg.bn_stats for arm, cfg in cells.items()} == {
        "PURE-CT": "real_ct", "ORACLE-CT-MRI": "training_mix", "NAIVE-CT-MRI": "training_mix",
        "CYCLEGAN-CT-MRI": "real_ct", "MIX-CT-MRI": "training_mix"}
    fixed = base.with_settings(["predictor_bn_stats=real_ct"])   # --set: one statistic for every arm
    assert {TrainConfig.from_dict(j.spec["config"]).bn_stats
            for j in plan_jobs(fixed, tmp_path, 1, DEFAULT_ARMS) if j.spec["kind"] == "arm"} == {"real_ct"}
    text = _bn_stats_text({"PURE-CT": {"bn_stats": "real_ct"}, "NAIVE-CT-MRI": {"bn_stats": "training_mix"},
                           "OLD": {}})
    assert "real training CT (PURE-CT, OLD)" in text and "1:1 with each group its training batches held (NAIVE-CT-MRI)" in text


def test_a_view_re_reads_the_recorded_predictors_on_added_test_patients(tmp_path, tiny_base, capsys):
    """duiit experiment --from RUN --test-patients N: each cell's selected predictor reproduces its
    recorded test MSE on the experiment's own test patients, then is read on the added ones; a cell
    whose record does not match its predictor is refused."""
    arms = ["PURE-CT", "MIX-CT-MRI"]
    run = tmp_path / "run"
    results = run_experiment(run, cohorts=1, arms=arms, workers=1, base=tiny_base, log=lambda *a: None)
    n_test = tiny_base.phantom.ct_test_patients
    assert main(["experiment", "--out", str(tmp_path / "view"), "--from", str(run),
                 "--test-patients", str(n_test + 3)]) == 0
    saved = json.loads((tmp_path / "view" / "results.json").read_text())
    assert (tmp_path / "view" / "report.md").is_file() and saved["test_patients"] == n_test + 3
    for arm in arms:
        entry = saved["arms"][arm]
        assert entry["test_mse_original"][0] == pytest.approx(results["arms"][arm]["test_mse"][0], rel=1e-4)
        # all = the slice-weighted mean of the original and the added patients (equal slices per patient)
        assert entry["test_mse"][0] == pytest.approx(
            (n_test * entry["test_mse_original"][0] + 3 * entry["test_mse_added"][0]) / (n_test + 3), rel=1e-5)
    assert saved["comparison"] == json.loads(json.dumps(compare(saved["arms"])))
    # Compose: PURE-CT from the results file, DUIIT from the folder's cells; the tests are the experiment's.
    from duiit_fast import experiment_views as views
    composed = views.compose([(str(run / "results.json"), ["PURE-CT"]), (str(run), ["MIX-CT-MRI"])], 1, 1, tiny_base)
    assert {a: e["test_mse"] for a, e in composed["arms"].items()} == {a: results["arms"][a]["test_mse"] for a in arms}
    same = json.loads(json.dumps(composed["comparison"])) == json.loads(json.dumps(compare(composed["arms"])))
    assert same and composed["composed_from"][1]["folder"] == str(run)   # (NaN p-values: one cohort)
    import dataclasses
    with pytest.raises(DuiitConfigError, match="not this experiment's protocol \\(epochs differ\\)"):
        views.compose([(str(run / "results.json"), ["PURE-CT"])], 1, 1, dataclasses.replace(tiny_base, epochs=9))
    cell = run / "cohort-0" / "PURE-CT" / "result.json"
    record = json.loads(cell.read_text())
    record["test"]["mse"] *= 1.01
    cell.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["experiment", "--out", str(tmp_path / "view2"), "--from", str(run),
                 "--test-patients", str(n_test + 3)]) == 2
    assert "recorded" in capsys.readouterr().err and not (tmp_path / "view2").exists()


def test_a_run_that_differs_only_in_its_test_set_is_refused_with_the_way_to_re_read_it(tmp_path, tiny_base):
    import dataclasses
    from duiit_fast.experiment import _check_same_protocol
    from duiit_fast.io import write_json
    fewer = dataclasses.replace(tiny_base, phantom=dataclasses.replace(tiny_base.phantom, ct_test_patients=1))
    write_json(tmp_path / "experiment.json", {"config": json.loads(json.dumps(fewer.to_dict()))})
    with pytest.raises(DuiitConfigError, match="tested on 1 patients per cohort, not 2: `duiit experiment --out VIEW --from"):
        _check_same_protocol(tmp_path / "experiment.json", tiny_base)
    other = dataclasses.replace(fewer, epochs=9)   # another training too: no hint
    write_json(tmp_path / "experiment.json", {"config": json.loads(json.dumps(other.to_dict()))})
    with pytest.raises(DuiitConfigError, match=r"use a new --out folder$"):
        _check_same_protocol(tmp_path / "experiment.json", tiny_base)


def test_the_test_patient_interval_redraws_patients_only():
    from duiit_fast import experiment_views as extended_test

    def cell(errors):
        return [[{"patient_sq_errors": errors, "patient_slices": [2] * len(errors)}]]
    # Every patient alike: redrawing patients cannot move the share (100 − 60) / (100 − 20) = 0.5.
    cells = {"PURE-CT": cell([100.0] * 6), "ORACLE-CT-MRI": cell([20.0] * 6), "MIX-CT-MRI": cell([60.0] * 6)}
    assert extended_test.test_patient_interval(cells, "MIX-CT-MRI") == pytest.approx([0.5, 0.5])
    # Patients that disagree move it; restricted to the first 3 (alike) it is fixed again.
    cells["MIX-CT-MRI"] = cell([60.0] * 3 + [20.0, 100.0, 90.0])
    low, high = extended_test.test_patient_interval(cells, "MIX-CT-MRI")
    assert low < (100 - 65) / 80 < high   # the point share: MIX-CT-MRI averages 65
    assert extended_test.test_patient_interval(cells, "MIX-CT-MRI", first=3) == pytest.approx([0.5, 0.5])
    assert extended_test.test_patient_interval({"MIX-CT-MRI": cells["MIX-CT-MRI"]}, "MIX-CT-MRI") is None


def test_cohort_subset_restates_the_tests_over_the_cohorts_kept():
    from duiit_fast import experiment_views as cohort_subset
    assert cohort_subset.parse_cohorts("5-7,2") == [2, 5, 6, 7]
    recorded = json.loads((Path(__file__).parent / "fixtures/record/results.json").read_text())
    # Every cohort kept: the record's own comparison, recomputed from its lists.
    whole = cohort_subset.restate(recorded, list(recorded["cohorts"]))
    assert json.loads(json.dumps(whole["comparison"])) == recorded["comparison"]
    # Three cohorts: every per-cohort list cut to them, in order; the tests are those of the cut lists.
    kept = [1, 3, 4]
    view = cohort_subset.restate(recorded, kept)
    assert view["cohorts"] == kept
    duiit, naive = view["arms"]["MIX-CT-MRI"], view["arms"]["NAIVE-CT-MRI"]
    for key in ("test_mse", "val_mse", "reader_slope", "selected_epoch"):
        assert duiit[key] == [recorded["arms"]["MIX-CT-MRI"][key][c] for c in kept]
    assert duiit["bn_stats"] == recorded["arms"]["MIX-CT-MRI"]["bn_stats"]
    diff = np.subtract(duiit["test_mse"], naive["test_mse"])
    row = view["comparison"]["MIX-CT-MRI"]["vs NAIVE-CT-MRI"]
    assert row["mean_difference"] == pytest.approx(diff.mean())
    assert row["wins"] == int((diff < 0).sum())
    assert "over 3 cohort(s)" in view["verdict"]
    with pytest.raises(DuiitConfigError, match=r"\[7\]"):
        cohort_subset.restate(recorded, [0, 7])


def test_a_view_restates_a_finished_experiment_over_some_cohorts(tmp_path, capsys):
    recorded = Path(__file__).parent / "fixtures/record"
    out = tmp_path / "view"
    assert main(["experiment", "--out", str(out), "--from", str(recorded), "--cohort-ids", "2-4"]) == 0
    report = (out / "report.md").read_text()
    assert "Phantom cohorts [2, 3, 4]" in report and "over 3 cohort(s)" in report
    assert (out / "test_mse.png").is_file()
    assert json.loads((out / "results.json").read_text())["cohorts"] == [2, 3, 4]
    capsys.readouterr()
    assert main(["experiment", "--out", str(out), "--from", str(recorded), "--cohort-ids", "2-4"]) == 2
    assert "not empty" in capsys.readouterr().err   # a view never overwrites
    assert main(["experiment", "--out", str(tmp_path / "v2"), "--from", str(recorded)]) == 2
    assert "needs one of --cohort-ids" in capsys.readouterr().err


def test_interval_equivalence_and_power_of_paired_differences():
    from scipy import stats
    from duiit_fast.eval.metrics import equivalence_p, paired_interval, paired_power_effect
    rng = np.random.default_rng(0)
    b = rng.normal(80, 20, 40)
    a = b + rng.normal(-1.0, 14.2, 40)
    lo, hi = paired_interval(a, b, 0.90)
    # the 90 % interval excludes zero exactly when the two-sided t-test's p is below 0.1
    assert (lo > 0 or hi < 0) == (stats.ttest_rel(a, b).pvalue < 0.1)
    lo80, hi80 = paired_interval(a, b, 0.80)
    for margin in (3.0, 6.0, 12.0):   # TOST at 0.1 ⇔ the 80 % interval inside ±margin
        assert (equivalence_p(a, b, margin) < 0.1) == (-margin < lo80 and hi80 < margin)
    effect = paired_power_effect(14.2, 40)   # the plan's: sd 14.2 over 15 cohorts, 40 cohorts
    assert 5.5 < effect < 5.9
    # a simulation agrees with the power it was solved for
    hits = np.mean([stats.ttest_rel(rng.normal(effect, 14.2, 40), np.zeros(40)).pvalue < 0.1 for _ in range(4000)])
    assert abs(hits - 0.80) < 0.03


def test_the_experiment_on_own_folders_compares_arms_over_splits_and_recommends(tmp_path, capsys):
    """`duiit experiment --config run.toml --splits N` on folders written by `duiit phantoms`: the arms
    over patient-level splits, paired by split, the report ending in a recommendation chosen on validation."""
    from conftest import write_train_toml
    assert main(["phantoms", "--out", str(tmp_path / "data"), "--ct-patients", "10", "--source-patients", "4",
                 "--slices", "3", "--ct-size", "48", "--mri-size", "32", "--modalities", "ct", "mri",
                 "--no-progress"]) == 0
    config = write_train_toml(tmp_path / "run.toml", setting="MIX-CT-MRI", ct="data/ct", mri="data/mri",
                              val_fraction=0.2, test_fraction=0.2, translator_warmup_steps=2, steps_per_epoch=2,
                              epochs=2, decay_start_epoch=1, num_threads=1)
    out = tmp_path / "mine"
    assert main(["experiment", "--config", str(config), "--splits", "2", "--out", str(out), "--workers", "2",
                 "--arms", "PURE-CT", "MIX-CT-MRI"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["cohorts"] == [0, 1] and list(results["arms"]) == ["PURE-CT", "MIX-CT-MRI"]
    for split in (0, 1):   # split seed = training seed = split, on the user's folders
        spec = json.loads((out / f"cohort-{split}" / "MIX-CT-MRI" / ".result-job.json").read_text())["config"]
        assert (spec["split_seed"], spec["seed"], spec["ct"]) == (split, split, str(tmp_path / "data" / "ct"))
    assert "reader_slope" in results["arms"]["MIX-CT-MRI"]   # a CT reader is trained on the real CT
    report = (out / "report.md").read_text()
    assert "Your data" in report and "patient-level splits [0, 1]" in report
    chosen = min(results["arms"], key=lambda a: np.mean(results["arms"][a]["val_mse_crossfit"]))
    assert report.index("## Recommendation") > report.index("Paired tests") and f"**Train {chosen}.**" in report
    assert "What would change it" in report
    for argv, message in ((["--splits", "1"], "--splits must be at least 2"),
                          (["--splits", "2", "--arms", "ORACLE-CT-MRI"], "only the phantom can"),
                          ([], "needs both --config FILE and --splits N")):
        assert main(["experiment", "--config", str(config), "--out", str(tmp_path / "x"), *argv]
                    if argv != [] else ["experiment", "--splits", "3", "--out", str(tmp_path / "x")]) == 2
        assert message in capsys.readouterr().err


def test_the_recommendation_is_chosen_on_validation_and_says_how_sure():
    from duiit_fast.eval.recommendation import recommendation, units_to_show
    rng = np.random.default_rng(1)
    pure = rng.normal(100, 10, 8)
    arms = {"PURE-CT": {"test_mse": list(pure), "val_mse_crossfit": [90.0] * 8},
            "NAIVE-CT-MRI": {"test_mse": list(pure - 12 + rng.normal(0, 3, 8)), "val_mse_crossfit": [80.0] * 8},
            "MIX-CT-MRI": {"test_mse": list(pure - 30), "val_mse_crossfit": [85.0] * 8},   # best on test, not val
            "ORACLE-CT-MRI": {"test_mse": list(pure - 50), "val_mse_crossfit": [40.0] * 8}}   # a bound: never chosen
    text = recommendation({"cohorts": list(range(8)), "arms": arms}, "split")
    assert "**Train NAIVE-CT-MRI.**" in text and "next is MIX-CT-MRI" in text
    assert "Against CT alone: NAIVE-CT-MRI − PURE-CT" in text and "the 90 % interval excludes 0" in text
    assert units_to_show([1.0, -1.0, 2.0, 0.5], 0.0) is None and units_to_show([5.0, -3.0, 8.0, -2.0], 2.0) > 4
