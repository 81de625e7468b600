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
    assert not any(p.startswith("mri-mri-") for p in ids)   # the phantom's mri-0000 keeps its name
    config = write_train_toml(root / "again.toml", setting="PURE-CT", ct="export", val_fraction=0.2,
                              test_fraction=0.2, out_dir=str(root / "again"))
    assert main(["train", "--config", str(config), "--no-progress"]) == 0


# Loads an exported predictor with duiit_fast unimportable and prints its ages for the slices of a .npy
# volume in HU: what a deployment without this package does.
WITHOUT_DUIIT = """
import sys
sys.modules["duiit_fast"] = None   # any import of the package now fails
import numpy as np, torch
path = sys.argv[1]
if path.endswith(".onnx"):
    import onnxruntime
    session = onnxruntime.InferenceSession(path)
    predict = lambda volume: session.run(None, {"hu": volume})[0]
else:
    module = torch.export.load(path).module()
    predict = lambda volume: module(torch.from_numpy(volume)).detach().numpy()
for name in sys.argv[2:]:   # one line of ages per volume
    print(" ".join(f"{a:.6f}" for a in predict(np.load(name))))
"""


@pytest.mark.parametrize("suffix", [".pt2", ".onnx"])
def test_the_exported_predictor_gives_the_ages_of_duiit_predict_without_duiit(trained, suffix, tmp_path):
    """Tolerance: 0.01 years against slices.csv (which rounds to 0.01: ≤ 0.005) and 1e-3 years against
    Trainer.predict (the same float32 ops; ONNX Runtime's kernels differ in the last bits)."""
    import subprocess
    import sys
    from duiit_fast.train.trainer import Trainer
    from duiit_fast.use import _as_model_input
    if suffix == ".onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    root, model = trained
    ct = read_folder(root / "data" / "ct", modality="ct")
    patient, _, volume = ct.volumes[0]           # 48² native slices: resized to the model's 32² inside
    odd = np.ascontiguousarray(volume[:, 3:43, 5:41])   # and a non-square crop: a size never trained on
    np.save(tmp_path / "vol.npy", volume.astype(np.float32))
    np.save(tmp_path / "odd.npy", odd.astype(np.float32))
    exported = tmp_path / f"age{suffix}"
    assert main(["export", "--model", str(model), "--predictor", str(exported)]) == 0
    assert main(["predict", "--model", str(model), str(tmp_path / "vol.npy"), "--out", str(tmp_path / "pred"),
                 "--no-progress"]) == 0
    from_csv = np.array([float(r["predicted_age"]) for r in _rows(tmp_path / "pred" / "slices.csv")])
    trainer = Trainer.load(model)
    run = subprocess.run([sys.executable, "-c", WITHOUT_DUIIT, str(exported), str(tmp_path / "vol.npy"),
                          str(tmp_path / "odd.npy")], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert len(run.stdout.splitlines()) == 2
    for name, vol, line in zip(("vol.npy", "odd.npy"), (volume, odd), run.stdout.splitlines()):
        deployed = np.array([float(a) for a in line.split()])
        direct = trainer.predict(_as_model_input(trainer, vol.astype(np.float32), "ct")).numpy()
        np.testing.assert_allclose(deployed, direct, rtol=0, atol=1e-3)
        if name == "vol.npy":
            np.testing.assert_allclose(deployed, from_csv, rtol=0, atol=0.01)


def test_export_predictor_refuses_a_bad_file_name_in_one_line(trained, tmp_path, capsys):
    root, model = trained
    assert main(["export", "--model", str(model), "--predictor", str(tmp_path / "age.zip")]) == 2
    assert "must end in .pt2 or .onnx" in capsys.readouterr().err
    (tmp_path / "there.pt2").write_bytes(b"x")
    assert main(["export", "--model", str(model), "--predictor", str(tmp_path / "there.pt2")]) == 2
    assert "already exists; --overwrite replaces it" in capsys.readouterr().err
    assert main(["export", "--model", str(model)]) == 2
    assert "give one" in capsys.readouterr().err


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
