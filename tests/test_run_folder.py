"""What a run shows and leaves in its folder: the bar's plain-line form off a terminal, train.log
(options, a loss line every log_every steps, a line per epoch), options.toml, the pictures and
index.html per epoch, and an interrupted --overwrite told apart from a finished run."""
import io
import re

import pytest

from duiit_fast.cli import main
from duiit_fast.config import TrainConfig
from duiit_fast.errors import DuiitError
from duiit_fast.train.checkpoint import RunFolder
from duiit_fast.train.progress import RunProgress
from duiit_fast.train.trainer import Trainer


def _trained(cfg, stream=None, progress=True):
    trainer = Trainer(cfg, progress=progress)
    if stream is not None:
        trainer.monitor = RunProgress(progress, stream)
    trainer.fit()
    return trainer


def test_a_run_folder_has_the_log_options_and_pictures_of_every_epoch(tiny_config):
    cfg = tiny_config("MIX-CT-MRI", pictures=True, log_every=1, translator_warmup_steps=2)
    shown = io.StringIO()   # not a terminal: plain lines, no bar
    trainer = _trained(cfg, shown)
    out = trainer.cfg.out_dir
    from pathlib import Path
    folder = Path(out)
    for name in ("translations.png", "val_scatter.png", "loss_curves.png", "index.html", "options.toml",
                 "train.log", "images/epoch-001-translations.png", "images/epoch-002-val_scatter.png"):
        assert (folder / name).is_file(), name
    assert (folder / "translations.png").read_bytes() == (folder / "images/epoch-002-translations.png").read_bytes()
    page = (folder / "index.html").read_text()
    assert page.index("epoch 2") < page.index("epoch 1")   # newest first
    assert "images/epoch-001-translations.png" in page and "images/epoch-002-val_scatter.png" in page
    # options.toml reads back to the same configuration
    assert TrainConfig.from_toml(folder / "options.toml") == trainer.cfg
    log = (folder / "train.log").read_text()
    assert "---------------- options ----------------" in log and "resolved precision: fp32" in log
    # a loss line per step (log_every = 1): the warm-up's 2, then 2 epochs × 2 steps
    assert len(re.findall(r"translator warm-up step \d+/2", log)) == 2
    assert len(re.findall(r"training step \d+/4, epoch \d/2 \(", log)) == 4
    assert len(re.findall(r"epoch \d/2: val MSE [\d.]+ years²", log)) == 2
    text = shown.getvalue()
    assert "\r" not in text and "epoch 2/2: val MSE" in text and "translator warm-up: 2 steps" in text
    assert "options (those not at their default)" in text


def test_a_predictor_only_run_gets_the_age_scatter_and_no_translations(tiny_config, capsys):
    cfg = tiny_config("PURE-CT", pictures=True, epochs=1, decay_start_epoch=0)
    trainer = _trained(cfg, progress=False)
    from pathlib import Path
    folder = Path(trainer.cfg.out_dir)
    assert (folder / "val_scatter.png").is_file() and not (folder / "translations.png").exists()
    assert (folder / "train.log").is_file()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""   # progress off: nothing shown


def test_resume_appends_to_the_log(tiny_config):
    cfg = tiny_config("PURE-CT", epochs=1, decay_start_epoch=0)
    _trained(cfg, progress=False)
    more = tiny_config("PURE-CT", epochs=2, decay_start_epoch=0)
    Trainer(more, progress=False).fit(resume=True)
    from pathlib import Path
    log = (Path(more.out_dir) / "train.log").read_text()
    assert "=== run started" in log and "=== resumed at epoch 1" in log
    assert log.index("epoch 1/1:") < log.index("epoch 2/2:")


def test_an_interrupted_overwrite_is_told_apart_from_a_finished_run(tiny_config, monkeypatch, capsys):
    from pathlib import Path
    cfg = tiny_config("PURE-CT", epochs=1, decay_start_epoch=0)
    _trained(cfg, progress=False)
    folder = Path(cfg.out_dir)
    old = (folder / "checkpoint.pt").read_bytes()

    def interrupted(self, steps, ckpt):
        raise KeyboardInterrupt
    monkeypatch.setattr(Trainer, "_run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, progress=False).fit(overwrite=True)
    assert (folder / "checkpoint.pt").read_bytes() == old   # the old run is kept …
    assert (folder / RunFolder.OVERWRITE_MARK).is_file()    # … and marked
    with pytest.raises(DuiitError, match="an --overwrite of this folder was interrupted"):
        Trainer(cfg, progress=False).fit(resume=True)
    monkeypatch.undo()
    Trainer(cfg, progress=False).fit(overwrite=True)
    assert not (folder / RunFolder.OVERWRITE_MARK).exists()
    Trainer(cfg, progress=False).fit(resume=True)   # the new run, complete


def test_the_cli_says_an_overwrite_was_interrupted(tiny_phantom, tmp_path, monkeypatch, capsys):
    from conftest import phantom_toml, write_train_toml
    config = write_train_toml(tmp_path / "run.toml", setting="PURE-CT", out_dir=str(tmp_path / "run"))
    with open(config, "a") as f:   # the tiny cohort: the default phantom renders 650² CT for minutes
        f.write(phantom_toml(tiny_phantom))
    assert main(["train", "--config", str(config), "--no-progress"]) == 0

    def interrupted(self, steps, ckpt):
        raise KeyboardInterrupt
    monkeypatch.setattr(Trainer, "_run_epoch", interrupted)
    capsys.readouterr()
    assert main(["train", "--config", str(config), "--no-progress", "--overwrite"]) == 130
    err = capsys.readouterr().err
    assert "interrupted before the new run's first checkpoint" in err and err.count("\n") == 1
    assert main(["train", "--config", str(config), "--no-progress", "--resume"]) == 2
    assert "was interrupted before the new run's first checkpoint" in capsys.readouterr().err


def test_train_help_shows_a_minimal_config_that_reads():
    import sys
    from duiit_fast.cli.train import TRAIN_EPILOG
    tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")
    block = "\n".join(line[2:] for line in TRAIN_EPILOG.splitlines() if line.startswith("  "))
    cfg = TrainConfig.from_dict(tomllib.loads(block)).validate(check_paths=False).check_schedule()
    assert (cfg.setting, cfg.ct, cfg.mri, cfg.epochs) == ("MIX-CT-MRI", "data/ct", "data/mri", 20)
