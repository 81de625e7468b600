"""Nothing half-written: a kill -9 or a full disk while `translate` or `export` rewrites a non-empty
folder leaves the old dataset, complete, never a mix of two models' images; `data check` accepts
what is there. Kills land at chosen points (after k files, inside the swap) and at random times."""
import hashlib
import random
import signal
import time

import pytest

import forked
from duiit_fast.cli import main

def _tree(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _argv(verb, model, root, out, fmt):
    head = (["translate", "--model", str(model), "--source", "mri", str(root / "data" / "mri")] if verb == "translate"
            else ["export", "--model", str(model)])
    return [*head, "--out", str(out), "--format", fmt, "--no-progress"]


@pytest.fixture(params=["translate", "export"])
def rewrite(request, hostile_run, tmp_path):
    """An output folder holding a complete PNG dataset; the commands that rewrite it as PNG or as
    NIfTI (--overwrite); the PNG tree and the NIfTI tree an uninterrupted run gives (both are
    deterministic: the same model on the same inputs)."""
    root, model, _ = hostile_run
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    assert main(_argv(request.param, model, root, out, "png")) == 0
    assert main(_argv(request.param, model, root, fresh, "nifti")) == 0
    argv = {fmt: _argv(request.param, model, root, out, fmt) + ["--overwrite"] for fmt in ("png", "nifti")}
    return argv, out, _tree(out), _tree(fresh)


@pytest.mark.parametrize("kill_after", [0, 5])
def test_kill_while_writing_leaves_the_old_dataset(rewrite, kill_after):
    argv, out, old, new = rewrite
    assert forked.run(argv["nifti"], kill_after_files=kill_after) == -signal.SIGKILL
    assert _tree(out) == old
    assert main(["data", "check", str(out)]) == 0


def test_kill_inside_the_swap_leaves_old_or_new_and_the_next_run_cleans_up(rewrite):
    argv, out, old, new = rewrite
    assert forked.run(argv["nifti"], kill_in_swap=True) == -signal.SIGKILL
    assert _tree(out) == old
    assert [p for p in out.parent.iterdir() if "staging" in p.name]   # the killed run's staging folder
    assert forked.run(argv["nifti"]) == 0
    assert _tree(out) == new
    assert not [p for p in out.parent.iterdir() if "staging" in p.name]


@pytest.mark.parametrize("rewrite", ["translate"], indirect=True)   # export writes through the same path
def test_kill_at_random_times_never_leaves_a_mix(rewrite):
    """Each attempt rewrites the folder in the other format and is killed at a random time: the
    folder is then all PNG or all NIfTI, each exactly as a whole run writes it."""
    argv, out, png, nifti = rewrite
    rng = random.Random(0)
    start = time.perf_counter()
    assert forked.run(argv["nifti"]) == 0   # one whole run: how long the command takes here
    duration = time.perf_counter() - start
    for attempt in range(4):
        fmt = "png" if attempt % 2 == 0 else "nifti"
        proc = forked.start(argv[fmt])
        time.sleep(rng.uniform(0.2, 1.0) * duration)
        proc.kill()
        proc.join()
        assert _tree(out) in (png, nifti)
        assert main(["data", "check", str(out)]) == 0


def test_a_full_disk_keeps_the_old_dataset(rewrite):
    argv, out, old, new = rewrite
    # Room for small files but not for an image: the first image write fails (EFBIG, as ENOSPC would).
    err = out.parent / "stderr.txt"
    assert forked.run(argv["nifti"], stderr_path=str(err), file_size_limit=300) == 2
    text = err.read_text()
    assert text.startswith("duiit: error:") and text.count("\n") == 1 and "File too large" in text, text
    assert _tree(out) == old and main(["data", "check", str(out)]) == 0
    assert not [p for p in out.parent.iterdir() if "staging" in p.name]   # removed on the way out
