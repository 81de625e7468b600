"""labels.csv: one row per image file (or volume, or series folder) with the patient and age.

Required columns: patient_id, age, path (relative to the CSV's folder). Optional columns
rescale_slope and rescale_intercept map stored values to native units (value·slope + intercept),
as DICOM does; 16-bit PNG CT is usually stored as HU + 1024 (intercept -1024).
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import DuiitDataError

REQUIRED_COLUMNS = ("patient_id", "age", "path")
MIN_AGE, MAX_AGE = 0.0, 130.0   # years: outside it a label is a typo, not a patient


@dataclass(frozen=True)
class LabelRow:
    patient_id: str
    age: float
    path: Path
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    has_rescale: bool = False   # whether labels.csv gave either column for this row


def read_labels(root, skipped: list | None = None) -> list[LabelRow]:
    """Parse root/labels.csv; every problem is a DuiitDataError naming the file and row.

    With a `skipped` list, a bad row (bad age, missing file, ...) is appended to it as
    (where, problem) and left out instead of stopping; problems with the CSV itself still raise."""
    root = Path(root)
    csv_path = root / "labels.csv"
    if not root.is_dir():
        raise DuiitDataError(root, "data folder not found")
    if not csv_path.is_file():
        raise DuiitDataError(csv_path, "labels file not found (need patient_id,age,path columns)")
    try:
        # utf-8-sig: spreadsheet programs start their CSV with a byte-order mark.
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DuiitDataError(csv_path, f"missing column(s) {', '.join(missing)}")
            rows, seen = [], {}
            for line, rec in enumerate(reader, start=2):
                try:
                    row = _parse_row(csv_path, root, line, rec)
                    first = seen.setdefault(row.path.resolve(), (line, row.patient_id))
                    if first[0] != line:
                        raise DuiitDataError(f"{csv_path} line {line}", f"{row.path.name} is already labelled on "
                                             f"line {first[0]} (patient {first[1]}): one image, one row")
                    rows.append(row)
                except DuiitDataError as exc:
                    if skipped is None:
                        raise
                    skipped.append((exc.path, exc.problem))
    except UnicodeDecodeError:
        raise DuiitDataError(csv_path, "not a text CSV file") from None
    except csv.Error as exc:
        raise DuiitDataError(csv_path, f"not a readable CSV file ({exc})") from None
    if not rows:
        raise DuiitDataError(csv_path, "no labelled rows")
    return rows


def _parse_row(csv_path: Path, root: Path, line: int, rec: dict) -> LabelRow:
    where = f"{csv_path} line {line}"
    patient = (rec.get("patient_id") or "").strip()
    if not patient:
        raise DuiitDataError(where, "empty patient_id")
    age = parse_age(where, rec.get("age"))
    if not MIN_AGE <= age <= MAX_AGE:
        raise DuiitDataError(where, f"age {age:g} is outside [{MIN_AGE}, {MAX_AGE}] years")
    rel = (rec.get("path") or "").strip()
    if not rel:
        raise DuiitDataError(where, "empty path")
    path = root / rel
    if not path.exists():
        raise DuiitDataError(path, f"labelled in {csv_path.name} line {line} but the file is missing")
    has_rescale = bool((rec.get("rescale_slope") or "").strip() or (rec.get("rescale_intercept") or "").strip())
    slope = parse_number(where, "rescale_slope", rec.get("rescale_slope") or "1")
    if slope == 0 or abs(slope) > 1e6:
        raise DuiitDataError(where, f"rescale_slope {slope:g} is not a plausible scale (0 < |slope| <= 1e6)")
    intercept = parse_number(where, "rescale_intercept", rec.get("rescale_intercept") or "0")
    return LabelRow(patient, age, path, slope, intercept, has_rescale)


AGE_PATTERN = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def parse_age(where, text) -> float:
    """An age as people write it: ASCII digits with at most one decimal point. float() would also
    take '4_2' and full-width digits as 42, and '1e1' as 10."""
    raw = (text or "").strip() if isinstance(text, str) else text
    if not isinstance(raw, str) or not AGE_PATTERN.fullmatch(raw):
        raise DuiitDataError(where, f"age {_short(text)} is not a number of years (digits, one decimal point)")
    return float(raw)


def _short(text) -> str:
    shown = repr(text)
    return shown if len(shown) <= 40 else shown[:37] + "..."


_PLAIN_ASCII = re.compile(r"[\x21-\x5e\x60-\x7e]*")   # printable ASCII without '_' and spaces


def parse_number(where, column: str, text) -> float:
    """A finite float from a CSV field or a DICOM tag; anything else is one line naming `where`.
    Plain ASCII only: float() would read '4_2' and full-width digits too."""
    if isinstance(text, str) and not _PLAIN_ASCII.fullmatch(text.strip()):
        raise DuiitDataError(where, f"{column} {_short(text)} is not a number")
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise DuiitDataError(where, f"{column} {_short(text)} is not a number") from None
    if not math.isfinite(value):
        raise DuiitDataError(where, f"{column} {_short(text)} is not finite")
    return value
