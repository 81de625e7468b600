"""Readers, labels and the phantom writer: round trips and bad input named in one line."""
import re
import numpy as np
import pytest
import torch

from duiit_fast import Trainer
from duiit_fast.cli import main
from duiit_fast.config import PhantomConfig
from duiit_fast.data import load_folder, read_labels, read_slices, split_patients
from duiit_fast.data.readers import pil_scale
from duiit_fast.data import phantoms
from duiit_fast.data.writer import write_phantom_dataset
from duiit_fast.errors import DuiitDataError

from conftest import write_train_toml

SMALL = PhantomConfig(ct_train_patients=3, ct_val_patients=1, ct_test_patients=1, source_patients=3,
                      slices_per_patient=3, ct_size=40, mri_size=32, pet_size=16, seed=2)


@pytest.mark.parametrize("fmt", ["png", "npy"])
def test_phantom_dataset_round_trips_in_native_units(tmp_path, fmt):
    write_phantom_dataset(tmp_path, SMALL, ("ct", "mri"), fmt=fmt)
    rows = read_labels(tmp_path / "ct")
    anat = phantoms.make_cohort(SMALL.ct_train_patients + 2, SMALL.seed, "ct")[0]
    expected = phantoms.render_patient(anat, "ct", 40, 3, SMALL.seed)
    first = [r for r in rows if r.patient_id == anat.patient_id]
    # A PNG carries its own scale (text chunks) and reads back in HU; labels.csv repeats it.
    got = np.concatenate([read_slices(r.path) for r in first])
    np.testing.assert_allclose(got, expected, atol=0.5 if fmt == "png" else 0)  # PNG rounds to 1 HU
    if fmt == "png":
        assert pil_scale(first[0].path) == ("I;16", (first[0].rescale_slope, first[0].rescale_intercept))
    assert first[0].age == pytest.approx(anat.age, abs=0.01)
    ct = load_folder(tmp_path / "ct", "ct", 32)
    assert ct.images.shape == (9, 1, 32, 32) and ct.images.abs().max() <= 1
    assert len(ct.patients) == 3


def test_cli_phantoms_then_train_from_folders(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["phantoms", "--out", str(data), "--ct-patients", "5", "--source-patients", "3", "--slices", "3",
                 "--ct-size", "48", "--mri-size", "32", "--pet-size", "16", "--modalities", "ct", "mri",
                 "--no-progress"]) == 0
    config = write_train_toml(tmp_path / "run.toml", setting="MIX-CT-MRI", ct="data/ct", mri="data/mri",
                              val_fraction=0.2, test_fraction=0.2, out_dir=str(tmp_path / "run"))
    assert main(["train", "--config", str(config), "--no-progress"]) == 0
    assert "test MSE" in capsys.readouterr().out
    assert (tmp_path / "run" / "checkpoint.pt").exists() and (tmp_path / "run" / "metrics.json").exists()
    assert main(["train", "--config", str(config), "--no-progress", "--resume"]) == 0


def test_split_is_by_patient():
    train, val, test = split_patients([f"p{i}" for i in range(20)], 0.1, 0.2, seed=3)
    assert len(val) == 2 and len(test) == 4 and len(train) == 14
    assert not (set(train) & set(val)) and not (set(train) & set(test)) and not (set(val) & set(test))


def _dataset(tmp_path, csv_text, files=None):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "labels.csv").write_text(csv_text)
    for name, content in (files or {}).items():
        path = root / name
        if isinstance(content, np.ndarray):
            np.save(path, content)
        else:
            path.write_bytes(content)
    return root


def test_bad_inputs_name_the_file(tmp_path):
    good = np.zeros((2, 8, 8), np.float32)
    cases = [
        ("patient_id,age\np,40\n", {}, "missing column(s) path"),
        ("patient_id,age,path\np,forty,a.npy\n", {"a.npy": good}, "age 'forty' is not a number"),
        ("patient_id,age,path\np,40,missing.npy\n", {}, "the file is missing"),
        ("patient_id,age,path\np,40,a.png\n", {"a.png": b"this is text"}, "not a readable image"),
        ("patient_id,age,path\np,40,a.npy\n", {"a.npy": np.full((1, 8, 8), np.nan, np.float32)}, "NaN or Inf"),
        ("patient_id,age,path\np,40,a.npy\n", {"a.npy": np.zeros((1, 2, 2, 2))}, "expected a 2D slice or a 3D"),
        ("patient_id,age,path\np,40,a.txt\n", {"a.txt": b"x"}, "unsupported file type .txt"),
        ("patient_id,age,path\n", {}, "no labelled rows"),
    ]
    for i, (csv_text, files, message) in enumerate(cases):
        sub = tmp_path / str(i)
        sub.mkdir()
        root = _dataset(sub, csv_text, files)
        with pytest.raises(DuiitDataError, match=re.escape(message)) as info:
            load_folder(root, "ct", 32)
        assert str(root) in str(info.value)


def test_missing_folder_and_labels(tmp_path):
    with pytest.raises(DuiitDataError, match="data folder not found"):
        read_labels(tmp_path / "nope")
    with pytest.raises(DuiitDataError, match="labels file not found"):
        read_labels(tmp_path)


def test_truncated_png_is_a_data_error(tmp_path):
    from duiit_fast.data.writer import write_png16
    path = tmp_path / "img.png"
    write_png16(path, (np.arange(64 * 64) % 65535).astype(np.uint16).reshape(64, 64))
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DuiitDataError, match="img.png: not a readable image"):
        read_slices(path)


def test_bad_checkpoint_is_one_line(tmp_path):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"garbage")
    with pytest.raises(Exception, match="not a duiit_fast checkpoint"):
        Trainer.load(path)
    torch.save({"hello": 1}, path)
    with pytest.raises(Exception, match="not a duiit_fast checkpoint"):
        Trainer.load(path)


def test_phantom_volume_cache_gives_the_rendered_volumes_and_survives_damage(tmp_path, monkeypatch):
    from duiit_fast.data import datasets
    cohort = phantoms.make_cohort(2, 3, "ct")
    rendered = list(datasets.phantom_volumes(cohort, "mri", 16, 3, 0))
    first = list(datasets.phantom_volumes(cohort, "mri", 16, 3, 0, tmp_path))
    assert len(list(tmp_path.glob("phantom-*.npy"))) == 2
    damaged = sorted(tmp_path.glob("phantom-*.npy"))[0]
    damaged.write_bytes(b"not an npy file")
    again = list(datasets.phantom_volumes(cohort, "mri", 16, 3, 0, tmp_path))   # one re-rendered, one read
    calls = []
    monkeypatch.setattr(phantoms, "render_patient", lambda *a: calls.append(a))
    cached = list(datasets.phantom_volumes(cohort, "mri", 16, 3, 0, tmp_path))
    assert calls == []                                   # every volume now comes from the cache
    for runs in zip(rendered, first, again, cached):
        for pid, age, volume in runs[1:]:
            assert (pid, age) == runs[0][:2]
            np.testing.assert_array_equal(volume, runs[0][2])
    # Another modality, size or slice count is another volume, not a cache hit.
    list(datasets.phantom_volumes(cohort, "mri", 16, 4, 0, tmp_path))
    assert len(calls) == 2
