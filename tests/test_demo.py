"""The main job end to end at the smallest size: every output file is written and consistent."""
import json

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
    for name in ("translations.png", "loss_curves.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.rglob(".*.tmp*"))  # atomic writes leave no temporaries
