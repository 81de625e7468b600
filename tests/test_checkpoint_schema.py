"""A checkpoint is data checked against the run it claims to be before any of it is used: a crafted or
damaged one (with a valid checksum: anyone can compute one) is one line naming the file, exit 2,
never a traceback, a huge allocation or a silent result from random or NaN weights."""
import copy
import math

import pytest
import torch

from duiit_fast import Trainer
from duiit_fast.cli import main
from duiit_fast.errors import DuiitError
from duiit_fast.train import checkpoint as checkpoint_module
from duiit_fast.train.checkpoint import read_checkpoint, save_readers, write_checkpoint


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny trained MIX-CT-MRI checkpoint's state and a PURE-CT one's path."""
    from duiit_fast.config import FastConfig, PhantomConfig, TrainConfig
    root = tmp_path_factory.mktemp("schema")
    phantom = PhantomConfig(ct_train_patients=3, ct_val_patients=2, ct_test_patients=2, source_patients=3,
                            slices_per_patient=2, ct_size=40, mri_size=32, pet_size=16, seed=1)
    paths = {}
    for setting in ("MIX-CT-MRI", "PURE-CT"):
        cfg = TrainConfig(setting=setting, image_size=32, ngf=4, ndf=4, n_blocks=1, predictor="small", batch_size=2,
                          predictor_batch_size=4, epochs=1, decay_start_epoch=0, steps_per_epoch=2, phantom=phantom,
                          out_dir=str(root / setting), reader_steps=3, fast=FastConfig(precision="fp32"),
                          label_cues=True)
        trainer = Trainer(cfg, progress=False)
        trainer.fit()
        paths[setting] = root / setting / "checkpoint.pt"
    return read_checkpoint(paths["MIX-CT-MRI"]), paths, root


def _set(state, where, value):
    *parents, last = where
    for p in parents:
        state = state[p]
    if value is DELETE:
        del state[last]
    else:
        state[last] = value


DELETE = object()


def _mutations(state):
    p_key = next(k for k in state["nets"]["P"] if k.endswith("weight"))
    g_key = next(k for k in state["nets"]["G"] if k.endswith("weight"))
    shape = state["nets"]["P"][p_key].shape
    return {
        "changed shape": (("nets", "P", p_key), torch.zeros(*shape[:-1], shape[-1] + 1), "has shape"),
        "missing P": (("nets", "P"), DELETE, "holds no net 'P'"),
        "extra net": (("nets", "Z"), {"w": torch.zeros(1)}, "holds a net 'Z'"),
        "config as list": (("config",), [1, 2], "config is a list"),
        "huge ngf": (("config", "ngf"), 10 ** 6, "ngf: must lie in"),
        "unknown config field": (("config", "epoch"), 2, "unknown field"),
        "NaN weight": (("nets", "G", g_key), torch.full_like(state["nets"]["G"][g_key], math.nan), "NaN or infinite"),
        "NaN age_std": (("age_std",), math.nan, "age_std is not a finite number"),
        "zero age_std": (("age_std",), 0.0, "age_std must be positive"),
        "negative epoch": (("epoch",), -1, "epoch is not a step count"),
        "unknown entry": (("evil",), "x", "unknown entry 'evil'"),
        "missing history": (("history",), DELETE, "no history"),
        "nets not a table": (("nets",), "P", "nets: not a table"),
        "tensor is text": (("nets", "P", p_key), "weights", "not a tensor"),
        "best of another shape": (("best", "P"), {"x": torch.zeros(1)}, "best.P"),
        "NaN best": (("best", "P", p_key), torch.full(shape, math.nan), "best.P"),
        "reader of another shape": (("readers", "cues"), {"x": torch.zeros(1)}, "readers.cues"),
        "optimizer state of another length": (("optimizers", "pred"), {"state": {}, "param_groups": []},
                                              "cannot be restored"),
    }


@pytest.mark.parametrize("case", [
    "changed shape", "missing P", "extra net", "config as list", "huge ngf", "unknown config field", "NaN weight",
    "NaN age_std", "zero age_std", "negative epoch", "unknown entry", "missing history", "nets not a table",
    "tensor is text", "best of another shape", "NaN best", "reader of another shape",
    "optimizer state of another length"])
def test_a_crafted_checkpoint_is_one_line(saved, tmp_path, case, capsys):
    state, _, root = saved
    crafted = copy.deepcopy(state)
    where, value, message = _mutations(crafted)[case]
    _set(crafted, where, value)
    path = write_checkpoint(crafted, tmp_path / "crafted.pt")   # a valid checksum
    with pytest.raises(DuiitError, match=message):
        Trainer.load(path)
    assert main(["predict", "--model", str(path), str(root), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("duiit: error:") and err.count("\n") == 1 and "crafted.pt" in err


def test_missing_p_and_best_is_refused_not_random_weights(saved, tmp_path):
    state, _, _ = saved
    crafted = copy.deepcopy(state)
    del crafted["nets"]["P"]
    crafted["best"] = None
    with pytest.raises(DuiitError, match="holds no net 'P'"):
        Trainer.load(write_checkpoint(crafted, tmp_path / "c.pt"))


def test_an_oversized_file_is_refused_before_it_is_read(saved, tmp_path, monkeypatch):
    _, paths, _ = saved
    monkeypatch.setattr(checkpoint_module, "MAX_CHECKPOINT_BYTES", 1000)
    read = []
    monkeypatch.setattr(checkpoint_module.Path, "read_bytes", lambda self: read.append(self) or b"")
    with pytest.raises(DuiitError, match="larger than any checkpoint"):
        read_checkpoint(paths["PURE-CT"])
    assert not read


def test_a_valid_checkpoint_still_loads_and_predicts(saved):
    _, paths, _ = saved
    trainer = Trainer.load(paths["MIX-CT-MRI"])
    assert torch.isfinite(trainer.predict(torch.zeros(2, 1, 32, 32))).all()


def test_translator_init_is_used_even_without_a_warm_up(saved, tiny_config):
    _, paths, _ = saved
    source = read_checkpoint(paths["MIX-CT-MRI"])
    cfg = tiny_config("MIX-CT-MRI", translator_init=str(paths["MIX-CT-MRI"]), translator_warmup_steps=0,
                      n_blocks=1, epochs=1, decay_start_epoch=0, phantom=Trainer.load(paths["MIX-CT-MRI"]).cfg.phantom)
    trainer = Trainer(cfg, progress=False)
    trainer.warm_up()
    for k, v in trainer.nets["G"].state_dict().items():
        assert torch.equal(v, source["nets"]["G"][k])


@pytest.mark.parametrize("what, message", [("random bytes", "no checkpoint header"),
                                           ("PURE-CT", "holds no translators"),
                                           ("NaN translator", "NaN or infinite")])
def test_translator_init_is_checked(saved, tiny_config, tmp_path, what, message):
    state, paths, _ = saved
    init = tmp_path / "init.pt"
    if what == "random bytes":
        init.write_bytes(bytes(range(256)) * 10)
    elif what == "PURE-CT":
        init = paths["PURE-CT"]
    else:
        crafted = copy.deepcopy(state)
        g = crafted["nets"]["G"]   # one flat table: "mri.model.1.weight", ...
        g[next(iter(g))] = torch.full_like(g[next(iter(g))], math.nan)
        write_checkpoint(crafted, init)
    cfg = tiny_config("MIX-CT-MRI", translator_init=str(init), epochs=1, decay_start_epoch=0)
    with pytest.raises(DuiitError, match=message):
        Trainer(cfg, progress=False).fit()


def test_translator_init_and_reader_path_are_refused_where_unused(tiny_config, saved):
    from duiit_fast.errors import DuiitConfigError
    _, paths, _ = saved
    with pytest.raises(DuiitConfigError, match="translator_init: setting PURE-CT has no translators"):
        Trainer(tiny_config("PURE-CT", translator_init=str(paths["MIX-CT-MRI"])), progress=False)
    with pytest.raises(DuiitConfigError, match="reader_path: this run uses no CT reader"):
        Trainer(tiny_config("MIX-CT-MRI", reader_path=str(paths["MIX-CT-MRI"]), label_cues=False), progress=False)


def test_a_reader_file_is_checked(tiny_config, tmp_path):
    from duiit_fast.models.reader import AgeReader
    reader = AgeReader()
    state = reader.state_dict()
    state["age_std"] = torch.tensor(math.nan)
    bad = tmp_path / "readers.pt"
    write_checkpoint({"config": {}, "epoch": 0, "nets": {}, "readers": {"cues": state}}, bad)
    with pytest.raises(DuiitError, match="readers.cues.age_std holds NaN"):
        Trainer(tiny_config("MIX-CT-MRI", reader_path=str(bad)), progress=False).fit()
    save_readers({"cues": AgeReader()}, tmp_path / "good.pt")
    checkpoint_module.load_reader(tmp_path / "good.pt", "cues", "cpu")
