"""Nothing escapes: a patient id is a name, never a path; every write stays inside its --out; an
--out that overlaps an input is refused before anything is read; a non-empty --out is replaced only
when asked, and only if duiit wrote it."""
import hashlib
import os
import random

import pytest

from duiit_fast.cli import main
from duiit_fast.data.datasets import read_folder
from duiit_fast.errors import DuiitConfigError, DuiitError
from duiit_fast.paths import MAX_NAME_BYTES, FileNames, check_apart, confined, safe_name


@pytest.mark.parametrize("patient_id", ["../x", "/etc/passwd", "a/b", "a\\b", "..", ".", ".hidden", "CON", "nul.txt",
                                        "com1", "tab\there", "new\nline", "\x00nul", "é", "x" * 500, "%2F", "a b"])
def test_a_safe_name_is_one_harmless_component(patient_id):
    name = safe_name(patient_id)
    assert "/" not in name and "\\" not in name and not name.startswith(".")
    assert all(32 < ord(c) < 127 for c in name) and len(name.encode()) <= MAX_NAME_BYTES
    assert name.split(".")[0].lower() not in {"con", "nul", "com1", "prn", "aux"}


def test_distinct_ids_never_share_a_file_name():
    rng = random.Random(0)
    alphabet = "aA./\\%_-~ \t\n\x00é0"
    ids = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(5000)}
    ids |= {"P1", "p1", "x" * 300, "x" * 301, "%41", "A"}
    names = FileNames()
    folded = [names(i).casefold() for i in ids]
    assert len(set(folded)) == len(ids)   # distinct even on a case-insensitive file system
    assert names("P1") == names("P1")     # the same id keeps its name


def test_confined_refuses_paths_that_leave_the_folder(tmp_path):
    (tmp_path / "out").mkdir()
    os.symlink(tmp_path, tmp_path / "out" / "link")
    assert confined(tmp_path / "out", "a/b.png") == tmp_path / "out" / "a" / "b.png"
    for bad in ("../x", "/abs/x", "link/x", "a/../../x", "."):
        with pytest.raises(DuiitError, match="not inside the output folder"):
            confined(tmp_path / "out", bad)


def test_check_apart(tmp_path):
    data = tmp_path / "data"
    (data / "mri").mkdir(parents=True)
    for out in (data / "mri", data / "mri" / "translated", data, tmp_path):
        with pytest.raises(DuiitConfigError, match="--out"):
            check_apart(out, [data / "mri"])
    check_apart(tmp_path / "elsewhere", [data / "mri"])
    with pytest.raises(DuiitConfigError, match="empty path"):
        check_apart("", [data])


def _tree(root):
    """Every file under root with its content hash."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _nothing_escaped(root, target):
    assert not any(target.iterdir()), "a write landed at an absolute patient id"
    beside = {p.name for p in root.iterdir()}
    assert not any(n.startswith("escaped") or n == "sub" for n in beside), beside
    assert not (root.parent / "escaped-mri").exists() and not (root.parent / "escaped-ct").exists()


@pytest.mark.parametrize("source", ["mri", "pet"])
@pytest.mark.parametrize("fmt", ["png", "nifti"])
def test_translate_keeps_hostile_ids_as_names(hostile_run, source, fmt, monkeypatch):
    root, model, target = hostile_run
    monkeypatch.chdir(root / "data")   # a relative escape would land beside the data
    out = root / f"translated-{source}-{fmt}"
    assert main(["translate", "--model", str(model), "--source", source, str(root / "data" / source),
                 "--out", str(out), "--format", fmt, "--no-progress"]) == 0
    _nothing_escaped(root, target)
    assert not (root / "escaped-" / source).exists()
    back = read_folder(out, modality="ct")
    given = read_folder(root / "data" / source, modality=source)
    assert [p for p, _, _ in back.volumes] == [p for p, _, _ in given.volumes]   # the ids, unchanged
    assert all(p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*"))
    assert main(["data", "check", str(out)]) == 0


def test_export_keeps_hostile_ct_and_source_ids_as_names(hostile_run, monkeypatch):
    root, model, target = hostile_run
    monkeypatch.chdir(root / "data")
    out = root / "export"
    assert main(["export", "--model", str(model), "--out", str(out), "--format", "nifti", "--no-progress"]) == 0
    _nothing_escaped(root, target)
    ids = [p for p, _, _ in read_folder(out, modality="ct").volumes]
    assert any(i.startswith("../escaped") or i == ".." or i.startswith("/") for i in ids)
    assert any(i.startswith("mri-") for i in ids) and any(i.startswith("pet-") for i in ids)
    assert all(p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*"))


def test_predict_with_hostile_ids(hostile_run):
    root, model, target = hostile_run
    out = root / "predicted"
    assert main(["predict", "--model", str(model), str(root / "data" / "ct"), "--out", str(out), "--no-progress"]) == 0
    _nothing_escaped(root, target)
    assert sorted(p.name for p in out.iterdir()) == [".duiit-output", "patients.csv", "slices.csv"]


@pytest.mark.parametrize("verb", ["translate", "predict", "export"])
@pytest.mark.parametrize("where", ["same", "inside", "holds"])
def test_an_out_overlapping_an_input_is_refused_before_reading(hostile_run, verb, where, capsys):
    root, model, _ = hostile_run
    data = root / "data" / ("ct" if verb in ("predict", "export") else "mri")
    out = {"same": data, "inside": data / "translated", "holds": root / "data"}[where]
    before = _tree(root / "data")
    argv = {"translate": ["translate", "--model", str(model), "--source", "mri", str(data)],
            "predict": ["predict", "--model", str(model), str(data)],
            "export": ["export", "--model", str(model)]}[verb]
    assert main([*argv, "--out", str(out), "--overwrite", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err and ("input" in err or "holds" in err)
    assert _tree(root / "data") == before


def test_out_holding_the_model_is_refused(hostile_run, capsys):
    root, model, _ = hostile_run
    assert main(["predict", "--model", str(model), str(root / "data" / "ct"), "--out", str(root / "run"),
                 "--no-progress"]) == 2
    assert "holds the input" in capsys.readouterr().err


def test_non_empty_out_needs_overwrite_and_only_replaces_duiit_output(hostile_run, tmp_path, capsys):
    root, model, _ = hostile_run
    argv = ["predict", "--model", str(model), str(root / "data" / "ct"), "--no-progress", "--out"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own file")
    assert main([*argv, str(mine)]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert main([*argv, str(mine), "--overwrite"]) == 2
    assert "did not write" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "the user's own file"
    out = tmp_path / "pred"
    assert main([*argv, str(out)]) == 0
    (out / "slices.csv").write_text("stale")
    assert main([*argv, str(out), "--overwrite"]) == 0
    assert (out / "slices.csv").read_text().startswith("patient_id")
    assert not [p for p in tmp_path.iterdir() if "staging" in p.name]


def test_phantoms_into_an_existing_dataset_is_refused(tmp_path, capsys):
    argv = ["phantoms", "--ct-patients", "2", "--source-patients", "2", "--slices", "1", "--ct-size", "16",
            "--mri-size", "16", "--pet-size", "16", "--no-progress", "--out", str(tmp_path / "p")]
    assert main(argv) == 0
    before = _tree(tmp_path / "p")
    assert main([*argv, "--seed", "5"]) == 2
    assert "not empty" in capsys.readouterr().err and _tree(tmp_path / "p") == before
    assert main([*argv, "--seed", "5", "--overwrite"]) == 0
    assert _tree(tmp_path / "p") != before and main(["data", "check", str(tmp_path / "p")]) == 0


def test_train_out_dir_and_cache_dir_stay_apart_from_the_data(hostile_run, tmp_path, capsys):
    from conftest import write_train_toml
    root, _, _ = hostile_run
    ct = root / "data" / "ct"
    for extra in ({"out_dir": str(ct / "run")}, {"cache_dir": str(ct / "cache"), "out_dir": str(tmp_path / "r")},
                  {"out_dir": str(root / "data")}):
        config = write_train_toml(tmp_path / "c.toml", setting="PURE-CT", ct=str(ct), **extra)
        assert main(["train", "--config", str(config), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert ("out_dir" in err or "cache_dir" in err) and err.count("\n") == 1
    assert not (ct / "run").exists() and not (ct / "cache").exists()
