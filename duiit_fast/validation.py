"""Declarative checks of configuration dataclasses: a type from each field's annotation, a range
from one table beside the fields (config.RANGES), and refusals in one line that quote at most a
short piece of the value given."""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass

from .errors import DuiitConfigError


@dataclass(frozen=True)
class Range:
    """Allowed values of a number: lo ≤ v ≤ hi, or strict where open. None (an optional field unset)
    always passes. Upper bounds keep a typo (ngf = 1000000, image_size = 1048576) from becoming an
    allocation that takes the machine down: each is far above any real run."""
    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False

    def holds(self, v) -> bool:
        return (v > self.lo if self.lo_open else v >= self.lo) and (v < self.hi if self.hi_open else v <= self.hi)

    def __str__(self) -> str:
        def num(x):
            return str(int(x)) if float(x).is_integer() else f"{x:g}"
        return f"{'(' if self.lo_open else '['}{num(self.lo)}, {num(self.hi)}{')' if self.hi_open else ']'}"


def check_ranges(cfg, ranges: dict) -> None:
    """Every entry of `ranges` ("field" or "table.field") holds for cfg (None: an unset optional)."""
    for name, allowed in ranges.items():
        table, _, field_name = name.rpartition(".")
        value = getattr(getattr(cfg, table) if table else cfg, field_name)
        check(value is None or allowed.holds(value), name, f"must lie in {allowed}, got {short(value)}")


def short(value, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters: a 1 MB value must not become a 1 MB error line."""
    shown = repr(value)
    return shown if len(shown) <= limit else f"{shown[:limit - 20]}... ({len(shown)} characters)"


def check(ok: bool, name: str, problem: str) -> None:
    if not ok:
        raise DuiitConfigError(f"config {name}: {problem}")


def reject_unknown(cls, data: dict, prefix: str) -> None:
    """Unknown keys are refused in one line, each with the closest field name where one is close."""
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        def named(u):
            close = difflib.get_close_matches(str(u), known, n=1, cutoff=0.6)
            return short(prefix + str(u)) + (f" (did you mean {prefix}{close[0]}?)" if close else "")
        raise DuiitConfigError(f"config: unknown field(s) {', '.join(named(u) for u in unknown[:5])}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


# Field annotation (as written, `from __future__ import annotations` keeps it a string) → check.
_TYPE_CHECKS = {
    "int": (_is_int, "an integer"),
    "float": (_is_real, "a finite number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "Optional[int]": (lambda v: v is None or _is_int(v), "an integer"),
    "Optional[float]": (lambda v: v is None or _is_real(v), "a finite number"),
    "Optional[str]": (lambda v: v is None or isinstance(v, str), "a string"),
    "tuple": (lambda v: isinstance(v, (tuple, list)) and len(v) == 2 and all(_is_real(x) for x in v),
              "a pair of finite numbers"),
}


def check_types(obj, prefix: str) -> None:
    """Every field has the type its annotation says: `augment_flip = "no"` is an error, not True."""
    for f in dataclasses.fields(obj):
        check = _TYPE_CHECKS.get(f.type if isinstance(f.type, str) else getattr(f.type, "__name__", ""))
        if check is None:
            continue
        ok, what = check
        value = getattr(obj, f.name)
        if not ok(value):
            raise DuiitConfigError(f"config {prefix}{f.name}: must be {what}, got {short(value)}")


# Knobs tried on the phantom experiment, rejected on validation and removed from the package
# (docs/experiment.md, "What was tried": each one's numbers). Their code runs at REMOVED_AT. A
# stored configuration (an old checkpoint, a config file) with the knob at its off value reads as
# today's; with the knob on it is refused, naming the commit that still runs it.
REMOVED_AT = "7b3ad2a"
REMOVED_KNOBS = {"cycle_noise": 0.0, "critic_augment": False, "lambda_structure": 0.0, "predictor_raw_sources": False,
                 "predictor_ct_epochs": 0, "source_calibration": False, "tail_ensemble_epochs": 0,
                 "reader_augment": False, "predictor_ema": 0.0, "joint_warmup_steps": 0,
                 "predictor_bn_domains": "mixed", "predictor_beta1": None, "critic_layers": 3}


def without_removed_knobs(data: dict) -> dict:
    """data without the removed knobs it holds at their off value; one that is on is refused."""
    kept = {}
    for key, value in data.items():
        if key not in REMOVED_KNOBS:
            kept[key] = value
        elif value != REMOVED_KNOBS[key]:
            raise DuiitConfigError(f"config {key} = {short(value)}: a knob tried and rejected on validation, no longer "
                                   f"in this version (docs/experiment.md, 'What was tried'); commit {REMOVED_AT} "
                                   "still runs it")
    return kept
