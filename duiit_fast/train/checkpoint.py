"""Checkpoints and run folders: data only (no code runs on load), checksummed, written atomically;
one training process per folder."""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
from pathlib import Path

import torch

from ..errors import DuiitError
from ..models.reader import AgeReader
from ..io import atomic_path

CHECKPOINT_NAME = "checkpoint.pt"
# A checkpoint is this magic line, the SHA-256 of the payload in hex, a newline, and the payload:
# torch.save of tensors and plain data only, read back with weights_only=True (no code runs).
CHECKPOINT_MAGIC = b"DUIIT-CHECKPOINT-1\n"
# The paper-sized MIX-CT-MRI-PET run (two translator pairs at ngf 64, ResNet-50, Adam moments, the
# best epoch's P) is about 1.5 GB: a larger file is refused before it is read.
MAX_CHECKPOINT_BYTES = 4 * 2 ** 30


def json_roundtrip(value):
    """Config values as a TOML/JSON file would give them back (tuples become lists)."""
    return json.loads(json.dumps(value))


class RunFolder:
    """A run's output folder, held under an exclusive lock while a process trains in it: a second
    process is refused at once instead of racing. Stale temporaries of a killed run are removed."""

    def __init__(self, out_dir, lock: bool = True):
        self.lock = lock   # False: a non-writing rank of a distributed run, which rank 0's lock covers
        self.path = Path(out_dir)
        self.checkpoint = self.path / CHECKPOINT_NAME
        self._fd = None

    def __enter__(self) -> "RunFolder":
        import fcntl
        if not self.lock:
            return self
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DuiitError(f"{self.path}: cannot use as the run folder ({exc.strerror})") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise DuiitError(f"{self.path}: another duiit process is training in this folder") from None
        for stale in self.path.glob(".*.tmp*"):   # left by a process killed mid-write
            stale.unlink(missing_ok=True)
        return self

    # An --overwrite that started while the old run's checkpoint is still the folder's: the mark is
    # written first and removed once the new run's first checkpoint has replaced the old one, so an
    # interrupted overwrite is told apart from a finished old run.
    OVERWRITE_MARK = "overwrite-interrupted"

    def mark_overwrite(self) -> None:
        from ..io import write_text
        write_text(self.path / self.OVERWRITE_MARK,
                   "An --overwrite of this run folder started here; until its first checkpoint is written, "
                   f"{CHECKPOINT_NAME} is still the run it was replacing.\n")

    def written(self, checkpoint) -> None:
        """A checkpoint was written: where it is this folder's, the run it replaced is gone."""
        if Path(checkpoint).resolve() == self.checkpoint.resolve():
            (self.path / self.OVERWRITE_MARK).unlink(missing_ok=True)

    def refuse_interrupted_overwrite(self) -> None:
        if (self.path / self.OVERWRITE_MARK).exists():
            raise DuiitError(f"{self.path}: an --overwrite of this folder was interrupted before the new run's "
                             f"first checkpoint, so {CHECKPOINT_NAME} is still the old run's: run with --overwrite "
                             f"again to replace it, or delete {self.path / self.OVERWRITE_MARK} to resume the old run")

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)   # closing releases the lock (the kernel does it too if we are killed)


def write_checkpoint(state: dict, path) -> Path:
    """Atomically write `state` (tensors and plain data) with a checksum; fsync before the rename."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(CHECKPOINT_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
            f.flush()
            os.fsync(f.fileno())
    return path


def read_checkpoint(path) -> dict:
    """Load a checkpoint written by Trainer.save; anything else is one clear error. The checksum
    refuses a damaged file and weights_only=True refuses any pickled code."""
    path = Path(path)
    if not path.is_file():
        raise DuiitError(f"{path}: checkpoint not found")
    size = path.stat().st_size
    if size > MAX_CHECKPOINT_BYTES:   # checked before reading: the file is read whole
        raise DuiitError(f"{path}: {size / 2 ** 30:.1f} GiB is larger than any checkpoint this tool writes "
                         f"(at most {MAX_CHECKPOINT_BYTES / 2 ** 30:.0f} GiB): not a duiit_fast checkpoint")
    with open(path, "rb") as f:
        blob = f.read(MAX_CHECKPOINT_BYTES + 1)
    if not blob.startswith(CHECKPOINT_MAGIC):
        raise DuiitError(f"{path}: not a duiit_fast checkpoint (no checkpoint header)")
    digest, _, payload = blob[len(CHECKPOINT_MAGIC):].partition(b"\n")
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        raise DuiitError(f"{path}: checkpoint is damaged (checksum mismatch)")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not {"config", "nets", "epoch"} <= state.keys():
            raise KeyError("config/nets/epoch")
    except (RuntimeError, KeyError, TypeError, EOFError, OSError, pickle.UnpicklingError) as exc:
        raise DuiitError(f"{path}: not a duiit_fast checkpoint ({exc.__class__.__name__})") from None
    return state


def reader_from_state(state: dict, device) -> AgeReader:
    reader = AgeReader().to(device)
    reader.load_state_dict(state)
    reader.eval()
    for p in reader.parameters():
        p.requires_grad_(False)
    return reader


def save_readers(readers: dict, path) -> Path:
    """Readers shared by the runs of an experiment: {"cues": AgeReader, "feedback": AgeReader}."""
    return write_checkpoint({"config": {}, "epoch": 0, "nets": {},
                             "readers": {k: r.state_dict() for k, r in readers.items()}}, path)


def load_reader(path, role: str, device) -> AgeReader:
    from .schema import check_readers
    state = read_checkpoint(path)
    check_readers(state.get("readers", {}), path)
    if role not in state.get("readers", {}):
        raise DuiitError(f"{path}: holds no {role!r} reader (has {sorted(state.get('readers', {}))})")
    return reader_from_state(state["readers"][role], device)
