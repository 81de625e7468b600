"""A trained model in use from its checkpoint alone: duiit predict / translate / export, and the
round trip translate → export → duiit train reading the export back."""
import csv

import numpy as np
import pytest

from duiit_fast.cli import main
from duiit_fast.data.datasets import read_folder

from conftest import write_train_toml


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Phantom folders on disk and a tiny MIX-CT-MRI model trained from them."""
    root = tmp_path_factory.mktemp("use")
    assert main(["phantoms", "--out", str(root / "data"), "--ct-patients", "5", "--source-patients", "3",
                 "--slices", "3", "--ct-size", "48", "--mri-size", "32", "--modalities", "ct", "mri",
                 "--no-progress"]) == 0
    config = write_train_toml(root / "run.toml", setting="MIX-CT-MRI", ct="data/ct", mri="data/mri",
                              val_fraction=0.2, test_fraction=0.2, out_dir=str(root / "run"))
    assert main(["train", "--config", str(config), "--no-progress"]) == 0
    return root, root / "run" / "checkpoint.pt"


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_predict_a_labelled_folder_and_a_bare_file(trained, capsys):
    root, model = trained
    bare = root / "one.npy"
    np.save(bare, np.full((2, 48, 48), 30.0, dtype=np.float32))   # HU: brain-like grey, no label
    out = root / "pred"
    assert main(["predict", "--model", str(model), str(root / "data" / "ct"), str(bare), "--out", str(out),
                 "--no-progress"]) == 0
    assert "MSE" in capsys.readouterr().out
    slices, patients = _rows(out / "slices.csv"), _rows(out / "patients.csv")
    assert len(slices) == 5 * 3 + 2 and len(patients) == 6
    one = [p for p in patients if p["patient_id"] == "one"][0]
    assert one["age"] == "" and one["slices"] == "2" and 0 < float(one["predicted_age"]) < 150
    labelled = [p for p in patients if p["patient_id"] != "one"]
    assert all(p["age"] != "" for p in labelled)


@pytest.mark.parametrize("fmt", ["png", "nifti"])
def test_translate_writes_a_labelled_ct_dataset(trained, fmt, capsys):
    root, model = trained
    out = root / f"translated-{fmt}"
    assert main(["translate", "--model", str(model), "--source", "mri", str(root / "data" / "mri"),
                 "--out", str(out), "--format", fmt, "--no-progress"]) == 0
    back = read_folder(out, modality="ct")
    sources = read_folder(root / "data" / "mri", modality="mri")
    assert [(p, round(a, 2)) for p, a, _ in back.volumes] == [(p, round(a, 2)) for p, a, _ in sources.volumes]
    hu = np.concatenate([v for _, _, v in back.volumes])
    assert hu.shape == (3 * 3, 32, 32) and -1.0 <= hu.min() and hu.max() <= 81.0   # inside the 0–80 HU window


def test_export_then_train_reads_it_back(trained, capsys):
    root, model = trained
    out = root / "export"
    assert main(["export", "--model", str(model), "--out", str(out), "--no-progress"]) == 0
    assert "translated patient(s)" in capsys.readouterr().out
    ids = [p for p, _, _ in read_folder(out, modality="ct").volumes]
    assert sum(p.startswith("mri-") for p in ids) == 3 and len(ids) == 3 + 3   # 3 CT training patients + 3 MRI
    config = write_train_toml(root / "again.toml", setting="PURE-CT", ct="export", val_fraction=0.2,
                              test_fraction=0.2, out_dir=str(root / "again"))
    assert main(["train", "--config", str(config), "--no-progress"]) == 0


@pytest.mark.parametrize("argv, message", [
    (["predict", "--model", "nope.pt", "x", "--out", "o"], "no such checkpoint file"),
    (["predict", "--model", "{model}", "{root}/missing", "--out", "{root}/o"], "file not found"),
    (["translate", "--model", "{model}", "--source", "pet", "{root}/data/mri", "--out", "{root}/o"],
     "translates mri"),
    (["translate", "--model", "{model}", "--source", "mri", "{root}/bare.npy", "--out", "{root}/o"],
     "needs labelled inputs"),
])
def test_use_rejects_bad_input_in_one_line(trained, argv, message, capsys):
    root, model = trained
    np.save(root / "bare.npy", np.zeros((1, 32, 32), dtype=np.float32))
    argv = [a.format(model=model, root=root) for a in argv] + ["--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
