"""Atomic writes: outputs appear complete under their final name or not at all."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success rename it over `path` (os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary keeps the final suffixes (.tmp.nii.gz): some writers pick the format from them.
    stem = path.name[: len(path.name) - len("".join(path.suffixes))] or path.name
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp" + "".join(path.suffixes), dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


# -- whole output folders ----------------------------------------------------------------------

OUTPUT_MARKER = ".duiit-output"   # in every folder staged_folder writes: --overwrite replaces only those
_STAGING = ".duiit-staging-"


@contextlib.contextmanager
def staged_folder(out, overwrite: bool = False, flag: str = "--out"):
    """Build an output folder in a temporary sibling and swap it in complete, so `out` always holds
    the old content or the new, never a mix (a kill or a full disk leaves the old one and a
    staging folder that the next run removes). A non-empty `out` is refused unless `overwrite`, and
    even then only a folder this tool wrote (it holds OUTPUT_MARKER) is replaced."""
    out = check_output_folder(out, overwrite, flag)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(out)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}{_STAGING}{os.getpid()}-", dir=out.parent))
    try:
        yield stage
        (stage / OUTPUT_MARKER).write_text("written by duiit; `--overwrite` may replace this folder\n")
        os.chmod(stage, 0o777 & ~_umask())   # mkdtemp creates 0700
        _swap_in(stage, out)
    finally:
        if stage.exists():   # the new content on failure, the old one after a swap
            shutil.rmtree(stage, ignore_errors=True)


def check_output_folder(out, overwrite: bool = False, flag: str = "--out") -> Path:
    """The absolute output folder, or one line on why it cannot be written (call it before the
    work, so a refusal costs nothing): empty or absent, or, with overwrite, a folder duiit wrote."""
    from .errors import DuiitConfigError
    if out is None or str(out).strip() == "":
        raise DuiitConfigError(f"{flag} must name a folder, got an empty path")
    out = Path(os.path.abspath(os.fspath(out)))
    if out.is_symlink():
        raise DuiitConfigError(f"{flag} {out} is a symbolic link: give the folder itself")
    if out.exists() and not out.is_dir():
        raise DuiitConfigError(f"{flag} {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DuiitConfigError(f"{flag} {out} is not empty: give a new folder, or --overwrite to replace "
                                   "what an earlier duiit command wrote there")
        if not (out / OUTPUT_MARKER).is_file():
            raise DuiitConfigError(f"{flag} {out} holds files duiit did not write: --overwrite replaces only "
                                   "its own output folders; remove it yourself or give a new folder")
    return out


def _swap_in(stage: Path, out: Path) -> None:
    if not out.exists():
        os.rename(stage, out)
        return
    if _exchange(stage, out):   # one atomic step on Linux: stage now holds the old content
        return
    old = out.with_name(f".{out.name}{_STAGING}{os.getpid()}-old")
    os.rename(out, old)         # between these two renames `out` is absent: refused, never mixed
    os.rename(stage, out)
    os.rename(old, stage)


def _exchange(a: Path, b: Path) -> bool:
    """renameat2(RENAME_EXCHANGE): swap two paths atomically; False where the system lacks it."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    ok = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
    return ok


def _remove_stale_staging(out: Path) -> None:
    """Staging folders of killed runs (their process is gone) beside `out`."""
    for stale in out.parent.glob(f".{glob_escape(out.name)}{_STAGING}*"):
        pid = stale.name[len(f".{out.name}{_STAGING}"):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def glob_escape(name: str) -> str:
    import glob
    return glob.escape(name)


@contextlib.contextmanager
def folder_lock(lock_file, busy: str):
    """Hold an exclusive lock on `lock_file` (created with its folder); a second holder is refused at
    once with `busy` instead of waiting. The kernel drops the lock when its holder dies."""
    import fcntl
    from .errors import DuiitError
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DuiitError(f"{lock_file.parent}: {busy}") from None
        yield lock_file
    finally:
        os.close(fd)
