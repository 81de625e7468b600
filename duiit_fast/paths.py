"""Names read from data become file names here, and nowhere else; writes stay inside their folder.

A patient id, a series name or any other string that came out of a dataset is a *name*, never a
path: `safe_name` turns it into one file-name component that cannot climb out of a folder, and
`FileNames` keeps two ids from landing on one file. `confined` is the last check before a write:
the path, after normalisation and symlinks, lies inside the output folder. `check_apart` refuses
an output folder that equals, holds or lies inside an input folder, before anything is read.

Reading is not confined: labels.csv may name images by absolute path or outside its folder (the
datalists of this field do), and image files can be given from anywhere.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .errors import DuiitConfigError, DuiitError

# Windows' reserved device names (a dataset written here may be opened there): CON.png is no file.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
_PLAIN = re.compile(r"[A-Za-z0-9_\-.]")
MAX_NAME_BYTES = 120   # below every file system's 255, with room for a suffix such as .nii.gz


def safe_name(text: str) -> str:
    """One file-name component for `text`: letters, digits, '-', '_' and '.' stay, every other
    character (separators, '%', control characters, spaces, non-ASCII) becomes %XX of its UTF-8
    bytes, so distinct ids give distinct names. A name of dots only, a leading dot (hidden files,
    '..') and reserved device names are encoded too; an over-long name keeps a readable head and a
    hash of the whole."""
    if not isinstance(text, str) or text == "":
        raise DuiitError(f"cannot name a file after {text!r}: an empty or non-text id")
    out = "".join(c if _PLAIN.fullmatch(c) else _percent(c) for c in text)
    if out.startswith("."):
        out = "%2E" + out[1:]
    if out.split(".")[0].lower() in _RESERVED:
        out = "%" + format(ord(out[0]), "02X") + out[1:]
    if len(out.encode()) > MAX_NAME_BYTES:
        digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        out = out[: MAX_NAME_BYTES - 17] + "~" + digest
    return out


def _percent(char: str) -> str:
    return "".join(f"%{b:02X}" for b in char.encode("utf-8", "surrogateescape"))


class FileNames:
    """Allocates one file name per id. Percent-encoding is one-to-one, but a case-insensitive file
    system (macOS, Windows) would merge 'P1' and 'p1': a name whose case-folded form is taken gets
    a hash of its id appended."""

    def __init__(self):
        self._by_id: dict[str, str] = {}
        self._taken: set[str] = set()

    def __call__(self, patient_id: str) -> str:
        if patient_id in self._by_id:
            return self._by_id[patient_id]
        name = safe_name(patient_id)
        if name.casefold() in self._taken:
            name = name[: MAX_NAME_BYTES - 17] + "~" + hashlib.sha256(patient_id.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        self._taken.add(name.casefold())
        self._by_id[patient_id] = name
        return name


def real(path) -> Path:
    """The absolute path with symlinks resolved (of the part that exists)."""
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def is_within(path, root) -> bool:
    """Whether `path` is `root` or lies under it, both after normalisation and symlinks."""
    p, r = real(path), real(root)
    return p == r or r in p.parents


def confined(root, relative) -> Path:
    """root/relative, refused unless it stays inside root once resolved (no '..', no absolute
    part, no symlink pointing out)."""
    target = Path(root) / relative
    if Path(relative).is_absolute() or not is_within(target, root) or real(target) == real(root):
        raise DuiitError(f"refusing to write {target}: it is not inside the output folder {root}")
    return target


def check_apart(out, inputs, flag: str = "--out") -> None:
    """One line, before anything is read, when the output folder equals, holds or lies inside an
    input folder (for a file input: the file itself is inside the output folder)."""
    if out is None or str(out).strip() == "":
        raise DuiitConfigError(f"{flag} must name a folder, got an empty path")
    for given in inputs:
        if given is None:
            continue
        folder = Path(given)
        if is_within(out, folder) and folder.is_dir():
            how = "is" if real(out) == real(folder) else "lies inside"
            raise DuiitConfigError(f"{flag} {out} {how} the input folder {given}: write to a folder apart "
                                   "from the data (its files would be replaced)")
        if is_within(folder, out):
            raise DuiitConfigError(f"{flag} {out} holds the input {given}: write to a folder apart "
                                   "from the data (its files would be replaced)")
