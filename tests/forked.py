"""Run `duiit` commands as real processes that can be killed with SIGKILL, without paying an
interpreter start and `import torch` for each one: a forkserver imports torch and duiit_fast once and
forks every command from there (no thread pool has started in it, so forking is safe). The kill
drills start dozens of commands; this keeps them a few seconds each instead of ~4 s of start-up."""
from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import sys

PRELOAD = ["torch", "duiit_fast.cli", "duiit_fast.cli.data", "duiit_fast.cli.train", "duiit_fast.train.trainer",
           "duiit_fast.use", "forked"]
_context = None


def context():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _kill_after_calls(original, limit: int, seen: list):
    def wrapped(*args, **kwargs):
        seen[0] += 1
        if seen[0] > limit:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)
    return wrapped


def _command(argv, stderr_path, kill_after_files, kill_in_swap, file_size_limit):
    import torch
    torch.set_num_threads(1)   # one thread per command: the CI machine has 2 cores
    if stderr_path:
        fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 2)
        sys.stderr = os.fdopen(2, "w", buffering=1)
    if file_size_limit is not None:   # a full disk: writes past the limit fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
    from duiit_fast import io
    from duiit_fast.data import writer
    if kill_after_files is not None:   # SIGKILL once this many image files are written
        seen = [0]
        writer.write_png16 = _kill_after_calls(writer.write_png16, kill_after_files, seen)
        writer.write_nifti = _kill_after_calls(writer.write_nifti, kill_after_files, seen)
    if kill_in_swap:                   # SIGKILL where the finished folder would be swapped in
        io._swap_in = lambda stage, out: os.kill(os.getpid(), signal.SIGKILL)
    from duiit_fast.cli import main
    sys.stdout.flush()
    code = main(list(argv))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def start(argv, stderr_path=None, kill_after_files=None, kill_in_swap=False, file_size_limit=None):
    """A running `duiit ARGV` process (multiprocessing.Process: .pid, .kill(), .join(), .exitcode,
    negative for a signal)."""
    proc = context().Process(target=_command, args=(list(argv), stderr_path, kill_after_files, kill_in_swap,
                                                    file_size_limit))
    proc.start()
    return proc


def run(argv, timeout: float = 300, **kwargs) -> int:
    """Run `duiit ARGV` to its end; its exit status (negative: killed by that signal)."""
    proc = start(argv, **kwargs)
    proc.join(timeout)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
        raise TimeoutError(f"duiit {' '.join(argv)} ran past {timeout} s")
    return proc.exitcode
