"""Fault drill: kill -9 a training run at random points, resume it each time, and get the weights of
an uninterrupted run, bit for bit, on every loader engine."""
import random
import time

import pytest
import torch

import forked
from duiit_fast.data.loaders import dali_available
from duiit_fast.train.checkpoint import read_checkpoint

from conftest import write_train_toml

KILLS = 10
EPOCHS = 3 * KILLS   # each attempt saves at least one epoch before it is killed
PHANTOM = ("[phantom]\nct_train_patients = 3\nct_val_patients = 2\nct_test_patients = 2\nsource_patients = 3\n"
           "slices_per_patient = 3\nct_size = 40\nmri_size = 32\npet_size = 16\n")


def _train(config, out, resume, stderr_path=None):
    """`duiit train` as its own process (forked from a server that has torch imported: no start-up)."""
    argv = ["train", "--config", str(config), "--out", str(out), "--no-progress"] + (["--resume"] if resume else [])
    return forked.start(argv, stderr_path=stderr_path)


def _stamp(ckpt):
    """The checkpoint's modification time: polled cheaply while the run trains (no reading)."""
    try:
        return ckpt.stat().st_mtime_ns
    except FileNotFoundError:
        return None


@pytest.mark.parametrize("loader", ["memory", "torch"] + (["dali"] if dali_available() else []))
def test_kill_9_at_random_points_then_resume_matches_an_uninterrupted_run(tmp_path, loader):
    config = write_train_toml(tmp_path / "c.toml", setting="MIX-CT-MRI", epochs=EPOCHS, decay_start_epoch=EPOCHS // 2,
                              loader=loader, augment_crop_min=0.9, translator_warmup_steps=0)
    config.write_text(config.read_text() + PHANTOM)
    # The uninterrupted run trains alongside the drill (one thread each: the CI machine's 2 cores).
    straight = _train(config, tmp_path / "straight", resume=False, stderr_path=str(tmp_path / "straight.err"))

    rng, kills, ckpt = random.Random(loader), 0, tmp_path / "drill" / "checkpoint.pt"
    while kills < KILLS:
        before = _stamp(ckpt)
        proc = _train(config, tmp_path / "drill", resume=ckpt.exists())
        deadline = time.monotonic() + 120
        # Wait until this attempt has saved at least one epoch, then kill it at a random moment of
        # the next: mid-step, mid-evaluation or mid-save.
        while _stamp(ckpt) == before and proc.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.2))
        if not proc.is_alive():
            break
        proc.kill()   # SIGKILL
        proc.join()
        kills += 1
    final = _train(config, tmp_path / "drill", resume=True, stderr_path=str(tmp_path / "final.err"))
    final.join(timeout=300)
    assert final.exitcode == 0, (tmp_path / "final.err").read_text()
    assert kills == KILLS
    straight.join(timeout=300)
    assert straight.exitcode == 0, (tmp_path / "straight.err").read_text()

    a, b = read_checkpoint(tmp_path / "straight" / "checkpoint.pt"), read_checkpoint(ckpt)
    assert a["epoch"] == b["epoch"] == EPOCHS
    for net in a["nets"]:
        for key, tensor in a["nets"][net].items():
            assert torch.equal(tensor, b["nets"][net][key]), f"{net}.{key} differs after the drill"
    assert [r["loss"] for r in a["history"]] == [r["loss"] for r in b["history"]]
    assert not list((tmp_path / "drill").glob(".*.tmp*"))
