"""Nothing half-written: a kill -9 or a full disk while `translate` or `export` rewrites a non-empty
folder leaves the old dataset, complete, never a mix of two models' images; `data check` accepts
what is there. Kills land at chosen points (after k files, inside the swap) and at random times."""
import hashlib
import os
import random
import resource
import signal
import subprocess
import sys
import time

import pytest

from duiit_fast.cli import main

# Runs the CLI with a SIGKILL at a chosen point: after KILL_AFTER image files, or inside the swap.
KILLER = """
import os, signal, sys
from duiit_fast import io
from duiit_fast.data import writer
limit, seen = int(os.environ.get("KILL_AFTER", "-1")), [0]
def counting(original):
    def wrapped(*args, **kwargs):
        seen[0] += 1
        if limit >= 0 and seen[0] > limit:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)
    return wrapped
writer.write_png16, writer.write_nifti = counting(writer.write_png16), counting(writer.write_nifti)
if os.environ.get("KILL_IN_SWAP"):
    def swap(stage, out):
        os.kill(os.getpid(), signal.SIGKILL)
    io._swap_in = swap
from duiit_fast.cli import main
sys.exit(main(sys.argv[1:]))
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _tree(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _argv(verb, model, root, out, fmt):
    head = (["translate", "--model", str(model), "--source", "mri", str(root / "data" / "mri")] if verb == "translate"
            else ["export", "--model", str(model)])
    return [*head, "--out", str(out), "--format", fmt, "--no-progress"]


def _run(argv, env=None, preexec=None):
    return subprocess.run([sys.executable, "-c", KILLER, *argv], env={**ENV, **(env or {})}, preexec_fn=preexec,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)


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
    result = _run(argv["nifti"], {"KILL_AFTER": str(kill_after)})
    assert result.returncode == -signal.SIGKILL
    assert _tree(out) == old
    assert main(["data", "check", str(out)]) == 0


def test_kill_inside_the_swap_leaves_old_or_new_and_the_next_run_cleans_up(rewrite):
    argv, out, old, new = rewrite
    assert _run(argv["nifti"], {"KILL_IN_SWAP": "1"}).returncode == -signal.SIGKILL
    assert _tree(out) == old
    assert [p for p in out.parent.iterdir() if "staging" in p.name]   # the killed run's staging folder
    assert _run(argv["nifti"]).returncode == 0
    assert _tree(out) == new
    assert not [p for p in out.parent.iterdir() if "staging" in p.name]


@pytest.mark.parametrize("rewrite", ["translate"], indirect=True)   # export writes through the same path
def test_kill_at_random_times_never_leaves_a_mix(rewrite):
    """Each attempt rewrites the folder in the other format and is killed at a random time: the
    folder is then all PNG or all NIfTI, each exactly as a whole run writes it."""
    argv, out, png, nifti = rewrite
    rng = random.Random(0)
    start = time.perf_counter()
    assert _run(argv["nifti"]).returncode == 0   # one whole run: how long the command takes here
    duration = time.perf_counter() - start
    for attempt in range(3):
        fmt = "png" if attempt % 2 == 0 else "nifti"
        proc = subprocess.Popen([sys.executable, "-c", KILLER, *argv[fmt]], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.6, 1.0) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert _tree(out) in (png, nifti)
        assert main(["data", "check", str(out)]) == 0


def _file_size_limit(limit):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_full_disk_keeps_the_old_dataset(rewrite):
    argv, out, old, new = rewrite
    # Room for small files but not for an image: the first image write fails (EFBIG, as ENOSPC would).
    result = _run(argv["nifti"], preexec=_file_size_limit(300))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("duiit: error:") and result.stderr.count("\n") == 1
    assert _tree(out) == old and main(["data", "check", str(out)]) == 0
    assert not [p for p in out.parent.iterdir() if "staging" in p.name]   # removed on the way out
