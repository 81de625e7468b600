"""Nothing lost, nothing executed: checkpoints hold data only, runs are not overwritten, divergence
stops at the step where it happens, every config field is typed."""
import os
import subprocess
import sys

import pytest
import torch

from duiit_fast import Trainer, TrainConfig
from duiit_fast.cli import main
from duiit_fast.errors import DuiitConfigError, DuiitError
from duiit_fast.train.checkpoint import CHECKPOINT_MAGIC, RunFolder, read_checkpoint

from conftest import write_train_toml


TINY_PHANTOM_TABLE = ("[phantom]\nct_train_patients = 3\nct_val_patients = 2\nct_test_patients = 2\n"
                      "source_patients = 2\nslices_per_patient = 3\nct_size = 32\nmri_size = 32\npet_size = 16\n")


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_checkpoint_that_would_run_code_is_refused(tiny_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import hashlib
    import io
    buffer = io.BytesIO()
    torch.save({"config": {}, "nets": {}, "epoch": 0, "x": _Payload()}, buffer)
    payload = buffer.getvalue()
    crafted = tmp_path / "evil.pt"
    # Even with a valid header and checksum, weights_only=True refuses the pickled callable.
    crafted.write_bytes(CHECKPOINT_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    with pytest.raises(DuiitError, match="not a duiit_fast checkpoint"):
        read_checkpoint(crafted)
    plain = tmp_path / "plain.pt"
    plain.write_bytes(payload)          # a bare torch.save file, as older versions wrote
    with pytest.raises(DuiitError, match="no checkpoint header"):
        Trainer.load(plain)
    assert not (tmp_path / "PWNED").exists()


def test_a_bit_flipped_checkpoint_is_refused(tiny_config, tmp_path):
    trainer = Trainer(tiny_config("PURE-CT", epochs=1), progress=False)
    trainer.fit()
    path = trainer.save(tmp_path / "m.pt")
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(DuiitError, match="damaged \\(checksum mismatch\\)"):
        Trainer.load(path)


def test_finished_runs_are_not_overwritten_and_resume_needs_a_checkpoint(tiny_config, tmp_path, capsys):
    config = write_train_toml(tmp_path / "c.toml", setting="PURE-CT", out_dir="run")
    config.write_text(config.read_text() + TINY_PHANTOM_TABLE)
    assert main(["train", "--config", str(config), "--no-progress"]) == 0
    ckpt = tmp_path / "run" / "checkpoint.pt"   # out_dir is relative to the config, like data folders
    before = ckpt.read_bytes()
    assert main(["train", "--config", str(config), "--no-progress"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert ckpt.read_bytes() == before
    assert main(["train", "--config", str(config), "--no-progress", "--overwrite"]) == 0
    fresh = write_train_toml(tmp_path / "d.toml", setting="PURE-CT", out_dir="other")
    fresh.write_text(fresh.read_text() + TINY_PHANTOM_TABLE)
    assert main(["train", "--config", str(fresh), "--no-progress", "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_resume_with_another_configuration_is_one_line(tiny_config, tmp_path):
    Trainer(tiny_config("PURE-CT", out_dir=str(tmp_path / "r")), progress=False).fit()
    with pytest.raises(DuiitConfigError, match="cannot resume with another configuration: predictor"):
        Trainer(tiny_config("PURE-CT", predictor="resnet18", out_dir=str(tmp_path / "r")), progress=False).fit(resume=True)
    longer = Trainer(tiny_config("PURE-CT", epochs=3, out_dir=str(tmp_path / "r")), progress=False)
    assert len(longer.fit(resume=True)) == 3   # a longer run is the same run


def test_a_second_process_cannot_train_in_a_locked_folder(tmp_path):
    with RunFolder(tmp_path / "run"):
        code = ("import sys; from duiit_fast.train.checkpoint import RunFolder\n"
                "try:\n    RunFolder(sys.argv[1]).__enter__()\nexcept Exception as e:\n    print(e); sys.exit(3)\n")
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True)
        assert out.returncode == 3 and "another duiit process" in out.stdout
    with RunFolder(tmp_path / "run"):   # released on exit
        pass


def test_stale_temporaries_are_cleaned(tmp_path):
    (tmp_path / "run").mkdir()
    stale = tmp_path / "run" / ".checkpoint.abc123.tmp.pt"
    stale.write_bytes(b"half a checkpoint")
    with RunFolder(tmp_path / "run"):
        assert not stale.exists()


@pytest.mark.parametrize("setting,field", [("MIX-CT-MRI", "lr_translator"), ("PURE-CT", "lr_predictor")])
def test_divergence_stops_at_the_step_and_saves_nothing_non_finite(tiny_config, setting, field, monkeypatch):
    from duiit_fast import config
    monkeypatch.setitem(config.RANGES, field, config.Range(0, 1e31))   # past the bound a user can set
    cfg = tiny_config(setting, **{field: 1e30})
    trainer = Trainer(cfg, progress=False)
    with pytest.raises(DuiitError, match="training diverged at epoch 0, step \\d+: (loss term|the weights)"):
        trainer.fit()
    ckpt = trainer.cfg.out_dir + "/checkpoint.pt"
    assert not os.path.exists(ckpt)   # the first epoch never finished: nothing was saved


def test_runaway_validation_error_is_flagged(tiny_config, monkeypatch):
    from duiit_fast.train import evaluation
    monkeypatch.setattr(evaluation, "RUNAWAY_FACTOR", 1e-9)
    with pytest.raises(DuiitError, match="training ran away at epoch 0"):
        Trainer(tiny_config("PURE-CT"), progress=False).fit()


@pytest.mark.parametrize("field,value,message", [
    ("device", 5, "device: must be a string"),
    ("image_size", 64.0, "image_size: must be an integer"),
    ("ct_window", ["a", "b"], "ct_window: must be a pair of finite numbers"),
    ("steps_per_epoch", "x", "steps_per_epoch: must be an integer"),
    ("num_threads", -1, "num_threads: must lie in \\[1, 1024\\]"),
    ("beta1", 1.5, "beta1: must lie in \\[0, 1\\)"),
    ("augment_flip", "no", "augment.flip: must be true or false"),
    ("lr_translator", float("inf"), "lr_translator: must be a finite number"),
    ("phantom", 3, "phantom: must be a table"),
])
def test_every_field_is_type_checked(field, value, message):
    with pytest.raises(DuiitConfigError, match=message):
        TrainConfig.from_dict({field: value}).validate()


@pytest.mark.parametrize("args,message", [
    (["--slices", "0"], "--slices must be at least 1"),
    (["--ct-size", "4"], "--ct-size must be at least 8"),
    (["--splits-placeholder"], None),
])
def test_cli_argument_checks(tmp_path, capsys, args, message):
    if message is None:   # train --splits 0 is refused, not ignored
        config = write_train_toml(tmp_path / "c.toml", setting="PURE-CT")
        assert main(["train", "--config", str(config), "--splits", "0"]) == 2
        assert "at least 1" in capsys.readouterr().err
        return
    assert main(["phantoms", "--out", str(tmp_path / "p"), "--no-progress", *args]) == 2
    assert message in capsys.readouterr().err
    a_file = tmp_path / "f"
    a_file.write_text("x")
    assert main(["phantoms", "--out", str(a_file), "--no-progress"]) == 2


def test_a_saved_model_translates_and_predicts_without_its_training_data(tiny_config, tmp_path):
    import shutil
    from duiit_fast.cli import main as cli
    assert cli(["phantoms", "--out", str(tmp_path / "data"), "--ct-patients", "6", "--source-patients", "3",
                "--slices", "3", "--ct-size", "48", "--mri-size", "32", "--pet-size", "16", "--no-progress",
                "--modalities", "ct", "mri"]) == 0
    config = write_train_toml(tmp_path / "c.toml", setting="MIX-CT-MRI", ct="data/ct", mri="data/mri", out_dir="run")
    assert cli(["train", "--config", str(config), "--no-progress"]) == 0
    shutil.move(tmp_path / "data", tmp_path / "moved")
    model = Trainer.load(tmp_path / "run" / "checkpoint.pt")
    images = torch.zeros(2, 1, 32, 32)
    assert model.translate(images, "mri").shape == (2, 1, 32, 32)
    assert model.predict(images).shape == (2,)
    with pytest.raises(DuiitError, match="data folder not found"):
        model.evaluate("test")
