"""Bounded inputs and the smaller refusals: every count, size and seed has a range; a configuration
that cannot fit the machine is refused before allocation; nothing waits forever; own formats carry
their scale; every refusal is one `duiit: error:` line with exit 2."""
import csv

import numpy as np
import pytest
import torch

from duiit_fast import Trainer, TrainConfig
from duiit_fast.cli import main
from duiit_fast.errors import DuiitDataError, DuiitError

from conftest import TINY_MODEL_TOML, write_train_toml


def _one_line(capsys, *needles):
    err = capsys.readouterr().err
    assert err.startswith("duiit: error:") and err.count("\n") == 1, err[:300]
    for needle in needles:
        assert needle in err, err[:300]
    return err


@pytest.mark.parametrize("field, value, message", [
    ("seed", -1, "seed: must lie in [0, 2147483647]"),
    ("split_seed", -1, "split_seed: must lie in"),
    ("image_size", 1048576, "image_size: must lie in [32, 2048]"),
    ("ngf", 1000000, "ngf: must lie in [1, 512]"),
    ("predictor_batch_size", 10 ** 12, "predictor_batch_size: must lie in"),
    ("steps_per_epoch", 10 ** 12, "steps_per_epoch: must lie in"),
    ("epochs", 0, "epochs: must lie in"),
])
def test_numbers_out_of_range_are_one_line(tmp_path, capsys, field, value, message):
    config = write_train_toml(tmp_path / "c.toml", setting="PURE-CT", **{field: value})
    assert main(["train", "--config", str(config), "--no-progress"]) == 2
    _one_line(capsys, message)


def test_phantom_seed_and_window_and_huge_values(tmp_path, capsys):
    config = write_train_toml(tmp_path / "c.toml", setting="PURE-CT")
    config.write_text(config.read_text() + "[phantom]\nseed = -1\n")
    assert main(["train", "--config", str(config)]) == 2
    _one_line(capsys, "phantom.seed: must lie in")
    config = write_train_toml(tmp_path / "c.toml", setting="PURE-CT", ct_window="[40.0, 1e-300]")
    config.write_text(config.read_text().replace('"[40.0, 1e-300]"', "[40.0, 1e-300]"))
    assert main(["train", "--config", str(config)]) == 2
    _one_line(capsys, "ct_window: must be (level in [-2000, 4000], width in [1, 10000]) HU")
    config = write_train_toml(tmp_path / "c.toml", setting="x" * 1_000_000)
    assert main(["train", "--config", str(config)]) == 2
    assert len(_one_line(capsys, "config setting")) < 1000


def test_a_configuration_too_big_for_the_machine_is_refused_before_allocating(monkeypatch, tmp_path):
    from duiit_fast.train import networks, schema
    # Training: 4096 pairs of 2048² images need terabytes of activations; refused before any data.
    cfg = TrainConfig(setting="MIX-CT-MRI", image_size=2048, batch_size=4096, ngf=4, ndf=4, predictor="small",
                      epochs=2, decay_start_epoch=1, out_dir=str(tmp_path / "run"))
    trainer = Trainer(cfg, progress=False)
    with pytest.raises(DuiitError, match="needs about .* GiB .* more than this machine's memory"):
        trainer.fit()
    assert trainer._data is None and not (tmp_path / "run" / "checkpoint.pt").exists()
    # Weights alone too large: refused before a network is built anywhere but on the meta device.
    monkeypatch.setattr(schema, "machine_bytes", lambda: 2 ** 30)
    built = []
    original = networks.Networks.build.__func__
    monkeypatch.setattr(networks.Networks, "build",
                        classmethod(lambda cls, c, device, *a: built.append(device) or original(cls, c, device, *a)))
    with pytest.raises(DuiitError, match="more than this machine's memory \\(1 GiB\\)"):
        Trainer(TrainConfig(setting="MIX-CT-MRI", ngf=512, epochs=2, decay_start_epoch=1), progress=False)
    assert built and all(d == torch.device("meta") for d in built)


def test_a_split_without_training_patients_is_a_config_error(hostile_run, tmp_path, capsys):
    root, _, _ = hostile_run
    config = write_train_toml(tmp_path / "c.toml", setting="PURE-CT", ct=str(root / "data" / "ct"),
                              val_fraction=0.45, test_fraction=0.45, out_dir=str(tmp_path / "run"))
    assert main(["train", "--config", str(config), "--no-progress"]) == 2   # refused, not a sampler spinning
    _one_line(capsys, "val_fraction/test_fraction", "leave none for training")


@pytest.mark.parametrize("argv, message", [
    (["phantoms", "--ct-patients", "1000000000000"], "--ct-patients must lie in"),
    (["phantoms", "--seed", "-1"], "--seed must be at least 0"),
    (["phantoms", "--ct-patients", "100000", "--ct-size", "4096"], "GiB free"),
    (["bench", "--device", "tpu"], "--device must be auto, cpu or cuda"),
])
def test_cli_bounds(tmp_path, capsys, argv, message):
    if argv[0] == "phantoms":
        argv = [*argv, "--out", str(tmp_path / "p"), "--no-progress"]
    assert main(argv) == 2
    _one_line(capsys, message)
    assert not (tmp_path / "p").exists()


def test_train_flag_conflicts(tmp_path, capsys):
    config = write_train_toml(tmp_path / "c.toml", setting="PURE-CT")
    assert main(["train", "--config", str(config), "--resume", "--overwrite"]) == 2
    _one_line(capsys, "give one")
    assert main(["train", "--config", str(config), "--out", ""]) == 2
    _one_line(capsys, "--out must name a folder")
    for verb in (["predict", "--model", "m.pt", "x"], ["export", "--model", "m.pt"]):
        assert main([*verb, "--out", ""]) == 2
        capsys.readouterr()


def test_experiment_lock(tmp_path, capsys):
    from duiit_fast.io import folder_lock
    with folder_lock(tmp_path / "exp" / ".experiment.lock", "held by this test"):
        assert main(["experiment", "--quick", "--cohorts", "1", "--arms", "PURE-CT", "--out",
                     str(tmp_path / "exp")]) == 2
    _one_line(capsys, "another duiit experiment is running in this folder")
    assert not (tmp_path / "exp" / "cohort-0").exists()


def test_predict_reports_what_it_skipped(hostile_run, tmp_path, capsys):
    import shutil
    root, model, _ = hostile_run
    data = tmp_path / "ct"
    shutil.copytree(root / "data" / "ct", data)
    victim = sorted(data.rglob("*.png"))[0]
    victim.write_bytes(b"not a png")
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(model), str(data), "--out", str(out), "--on-bad-file", "skip",
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert f"skipped {victim}" in captured.err and "1 bad file(s) skipped" in captured.out


def test_nan_images_are_refused_by_translate_and_predict(hostile_run):
    _, model, _ = hostile_run
    trainer = Trainer.load(model)
    bad = torch.zeros(1, 1, 32, 32)
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(DuiitDataError, match="NaN or infinite"):
        trainer.translate(bad, "mri")
    with pytest.raises(DuiitDataError, match="NaN or infinite"):
        trainer.predict(bad)


# -- readers -----------------------------------------------------------------------------------

def test_a_strip_is_not_an_image(tmp_path):
    from PIL import Image
    from duiit_fast.data import read_slices
    Image.fromarray(np.zeros((1, 10000), np.uint8)).save(tmp_path / "strip.png")
    with pytest.raises(DuiitDataError, match="1×10000 slice is not a plausible image"):
        read_slices(tmp_path / "strip.png")


def test_dicom_slices_at_one_position_are_refused(tmp_path):
    import pydicom
    from duiit_fast.data import read_slices
    from duiit_fast.data.writer import write_dicom_series
    write_dicom_series(tmp_path / "s", np.zeros((3, 16, 16), np.float32), "ct", "p")
    files = sorted((tmp_path / "s").iterdir())
    ds = pydicom.dcmread(files[0])
    ds.ImagePositionPatient = pydicom.dcmread(files[1]).ImagePositionPatient
    ds.save_as(files[0])
    with pytest.raises(DuiitDataError, match="lie at one position"):
        read_slices(tmp_path / "s")


def test_nifti_with_an_infinite_slope_is_refused(tmp_path):
    import nibabel as nib
    from duiit_fast.data import read_slices
    img = nib.Nifti1Image(np.ones((16, 16, 2), np.int16), np.eye(4))
    img.header["scl_slope"] = np.inf
    nib.save(img, tmp_path / "v.nii")
    with pytest.raises(DuiitDataError, match="scl_slope is inf"):
        read_slices(tmp_path / "v.nii")


# -- 16-bit PNGs carry their scale -------------------------------------------------------------

def test_a_png_written_by_duiit_reads_in_hu_anywhere(tmp_path):
    from duiit_fast.data import read_slices
    from duiit_fast.data.writer import write_png16
    stored = (np.arange(32 * 32) * 40 % 65535).astype(np.uint16).reshape(32, 32)
    write_png16(tmp_path / "a.png", stored, 1.0, -1024.0)
    np.testing.assert_array_equal(read_slices(tmp_path / "a.png")[0], stored.astype(np.float32) - 1024)


def _bare_pngs(root, tmp_path):
    """The hostile CT dataset's first patient as PNGs without labels.csv: HU + 1024, no scale stored."""
    from PIL import Image
    from duiit_fast.data.datasets import read_folder
    _, _, volume = read_folder(root / "data" / "ct", modality="ct").volumes[0]
    paths = []
    for i, hu in enumerate(volume):
        path = tmp_path / f"bare{i}.png"
        Image.fromarray(np.round(hu + 1024).astype(np.uint16)).save(path)
        paths.append(path)
    return volume, paths


def test_a_bare_16_bit_png_is_not_read_as_hu(hostile_run, tmp_path, capsys):
    root, model, _ = hostile_run
    volume, (png, _) = _bare_pngs(root, tmp_path)
    assert main(["predict", "--model", str(model), str(png), "--out", str(tmp_path / "a"), "--no-progress"]) == 2
    _one_line(capsys, "bare0.png", "without a stored scale", "--png-rescale")
    assert main(["predict", "--model", str(model), str(png), "--out", str(tmp_path / "b"), "--no-progress",
                 "--png-rescale", "1", "-1024"]) == 0
    np.save(tmp_path / "hu.npy", volume[:1])   # the same slice in HU, as a .npy
    assert main(["predict", "--model", str(model), str(tmp_path / "hu.npy"), "--out", str(tmp_path / "c"),
                 "--no-progress"]) == 0
    ages = [_ages(tmp_path / name / "slices.csv") for name in ("b", "c")]
    np.testing.assert_allclose(ages[0], ages[1], atol=0.02)


def test_csv_and_stored_scale_must_agree(tmp_path):
    from duiit_fast.data.datasets import read_folder
    from duiit_fast.data.writer import write_png16
    (tmp_path / "d").mkdir()
    write_png16(tmp_path / "d" / "a.png", np.zeros((16, 16), np.uint16), 1.0, -1024.0)
    (tmp_path / "d" / "labels.csv").write_text("patient_id,age,path,rescale_slope,rescale_intercept\n"
                                                "p,40,a.png,1,-1024\n")
    assert read_folder(tmp_path / "d").volumes[0][2].min() == -1024   # applied once
    (tmp_path / "d" / "labels.csv").write_text("patient_id,age,path,rescale_slope,rescale_intercept\n"
                                                "p,40,a.png,1,0\n")
    with pytest.raises(DuiitDataError, match="but labels.csv gives"):
        read_folder(tmp_path / "d")


def _ages(path):
    with open(path, newline="") as f:
        return np.array([float(r["predicted_age"]) for r in csv.DictReader(f)])


def test_tiny_model_toml_is_within_every_range():
    TrainConfig.from_dict({k: v for k, v in TINY_MODEL_TOML.items()}).validate()


def test_inference_counts_only_the_weights(monkeypatch):
    from duiit_fast.train import schema
    monkeypatch.setattr(schema, "machine_bytes", lambda: 8 * 2 ** 30)
    paper = TrainConfig(setting="MIX-CT-MRI").validate(check_paths=False)   # the paper's sizes: ~40 GiB to train
    schema.check_fits(paper, torch.device("cpu"), training=False)          # a trained model still predicts
    with pytest.raises(DuiitError, match="more than this machine's memory \\(8 GiB\\)"):
        schema.check_fits(paper, torch.device("cpu"))
