"""The main job end to end at the smallest size: every output file is written and consistent."""
import json
import re

import pytest

from duiit_fast import demo


def test_demo_writes_metrics_report_and_figures(tmp_path, monkeypatch):
    original = demo.demo_config

    def tiny(quick, out_dir):
        cfg = original(True, out_dir)
        cfg.phantom.ct_test_patients, cfg.phantom.source_patients, cfg.phantom.slices_per_patient = 3, 3, 4
        cfg.epochs, cfg.decay_start_epoch, cfg.steps_per_epoch, cfg.ngf, cfg.ndf, cfg.n_blocks = 2, 1, 2, 4, 4, 1
        return cfg
    monkeypatch.setattr(demo, "demo_config", tiny)
    result = demo.run_demo(tmp_path, quick=True, progress=False, log=lambda *_: None)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for setting in ("PURE-CT", "MIX-CT-MRI", "ORACLE-CT-MRI"):
        assert metrics[setting]["mse"] == pytest.approx(result[setting]["mse"]) and metrics[setting]["mse"] > 0
    assert "gap_closed" in metrics["comparison"]
    report = (tmp_path / "report.md").read_text()
    assert "How far to trust it" in report and f"{metrics['PURE-CT']['mse']:.1f}" in report
    # its own numbers first, labelled as a smoke run; the record last, dated, without commit hashes
    assert report.index("**Smoke run**") < report.index("## This run's results") < report.index(
        "## For comparison: the recorded experiment")
    assert report.index(f"{metrics['PURE-CT']['mse']:.1f}") < report.index("## What was run")
    assert "commit" not in report and not re.search(r"\b[0-9a-f]{7}\b", report)
    # The experiment's per-setting statistic, said per setting (DUIIT and ORACLE: the training mix).
    assert ("MIX-CT-MRI: re-estimated on real CT mixed 1:1" in report
            and "PURE-CT: re-estimated on the real training CT" in report)
    for name in ("translations.png", "loss_curves.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.rglob(".*.tmp*"))  # atomic writes leave no temporaries


def test_the_demo_quotes_the_recorded_experiment_with_its_spread_and_time():
    import json
    from duiit_fast.demo import RECORDED_EXPERIMENT, _recorded_experiment
    from duiit_fast.arms import DEFAULT_ARMS
    rec = json.loads(RECORDED_EXPERIMENT.read_text())
    text = _recorded_experiment()
    assert list(rec["arms"]) == list(DEFAULT_ARMS) and rec["cohorts"] >= 5
    for arm, e in rec["arms"].items():
        assert f"{arm} {e['mean']:.1f} ± {e['std']:.1f}" in text
    assert f"in {rec['wall_minutes']} min with {rec['workers']} workers" in text and rec["verdict"] in text
    for also in rec.get("also", []):
        assert also["label"] in text and also["verdict"] in text
        assert all(f"{arm} {e['mean']:.1f} ± {e['std']:.1f}" in text for arm, e in also["arms"].items())


def test_the_recorded_summary_is_the_recorded_run():
    """duiit_fast/recorded/experiment.json is computed from the record's results.json and the results
    of the same protocol measured again (docs/experiment/, copied to tests/fixtures/record/), not typed
    (commit 7b3ad2a has the script that wrote it)."""
    import json
    from pathlib import Path
    import numpy as np
    from duiit_fast.demo import RECORDED_EXPERIMENT
    rec = json.loads(RECORDED_EXPERIMENT.read_text())
    docs = Path(__file__).parent / "fixtures" / "record"
    assert rec.get("also"), "the record alone is one training per cell: ship its remeasurement too"
    for summary, results in [(rec, docs / "results.json")] + [(a, docs / a["results"]) for a in rec["also"]]:
        run = json.loads(results.read_text())
        assert summary["verdict"] == run["verdict"]
        if "wall_minutes" in summary:
            assert summary["wall_minutes"] == round(run["wall_seconds_this_invocation"] / 60, 1)
        assert list(summary["arms"]) == list(run["arms"])
        for arm, e in summary["arms"].items():
            test = np.array(run["arms"][arm]["test_mse"], dtype=float)
            assert len(test) == summary["cohorts"]
            assert e["mean"] == pytest.approx(test.mean()) and e["std"] == pytest.approx(test.std(ddof=1))


def test_a_composed_or_re_read_view_is_the_experiments_own_comparison_of_its_arms():
    """A composed view takes arms from several runs, a re-read view reads a run's
    trainings on more test patients, a restated view keeps some cohorts (duiit experiment --from/--compose); their comparison and
    verdict must be what the experiment computes from those arms, not edited."""
    import json
    from pathlib import Path
    from duiit_fast.eval.experiment_report import compare, verdict
    fixtures = Path(__file__).parent / "fixtures" / "record"   # one recorded view of each kind
    runs = [json.loads(p.read_text()) for p in fixtures.rglob("*.json")]
    views = [r for r in runs if isinstance(r, dict) and {"composed_from", "test_patients", "subset_of"} & set(r)]
    assert all(any(kind in r for r in views) for kind in ("composed_from", "test_patients", "subset_of"))
    for run in views:
        again = json.loads(json.dumps(compare(run["arms"])))
        assert again == run["comparison"] and verdict(run["arms"], again, len(run["cohorts"])) == run["verdict"]
        if "subset_of" not in run:   # a subset keeps its run's cells as they were
            assert all(len(e["test_mse_per_seed"][0]) == run["seeds"] for e in run["arms"].values())
