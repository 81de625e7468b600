"""docs/configuration.md, generated from config.py: every field of TrainConfig and of its tables, its default, its allowed range and the comment written beside it. The comments are the
documentation; this module only lays them out (`python -m duiit_fast.config_doc > docs/configuration.md`,
and a test checks that the page matches the code)."""
from __future__ import annotations

import dataclasses
import inspect
import re
import sys

from . import config

HEADER = """# Configuration

Every field of `TrainConfig` (a TOML file for `duiit train`, keyword arguments in Python, `--set KEY=VALUE`
on the command line; `--set TABLE.KEY=VALUE` for a table's) and of its `[phantom]`, `[fast]` and `[augment]`
tables. Generated from the comments in `duiit_fast/config.py`
(`python -m duiit_fast.config_doc > docs/configuration.md`); a test keeps this page equal to the code.
Relative folders in a TOML file are relative to the file. Unknown fields, wrong types and values outside
the range are refused in one line. Knobs tried on the phantom and rejected on validation were removed:
`docs/experiment.md` ("What was tried") keeps their numbers, and a stored configuration that turns one on is
refused with the commit that still runs it.
"""


def _field_comments(cls) -> list[tuple[str, str, str]]:
    """(section, field, comment) in source order: a `# …` line of its own opens a section, a
    comment after a field (and the indented comment lines under it) describe that field."""
    lines = inspect.getsource(cls).splitlines()
    out, section, current, heading = [], "", None, False
    for line in lines[1:]:
        field_match = re.match(r"    (\w+): [^=]+=[^#]*(?:#\s?(.*))?$", line)
        comment_only = re.match(r"\s+#\s?(.*)$", line)
        indent = len(line) - len(line.lstrip())
        if field_match and not line.strip().startswith("#"):
            current, heading = [section, field_match.group(1), (field_match.group(2) or "").strip()], False
            out.append(current)
        elif comment_only and current is not None and indent > 8:   # the field's comment goes on
            current[2] = f"{current[2]} {comment_only.group(1).strip()}".strip()
        elif comment_only:                                          # a heading, over one line or more
            text = comment_only.group(1).strip()
            section, current, heading = (f"{section} {text}" if heading else text), None, True
        else:
            current, heading = None, False
    return [tuple(c) for c in out]


def _default(f: dataclasses.Field) -> str:
    if f.default_factory is not dataclasses.MISSING:
        return "(table)"
    value = f.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(f"{v:g}" for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _table(cls, prefix: str) -> list[str]:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    rows, section = [], None
    for sec, name, comment in _field_comments(cls):
        if sec != section:
            rows += ([""] + ([f"### {sec}", ""] if sec else [])
                     + ["| field | default | allowed | what it does |", "|---|---|---|---|"])
            section = sec
        allowed = config.RANGES.get(prefix + name)
        comment = comment.replace("|", "\\|")
        rows.append(f"| `{prefix}{name}` | `{_default(fields[name])}` | {allowed if allowed else ''} | {comment} |")
    return rows


TABLE_TITLES = {"phantom": "the embedded head phantom (used when no `ct` folder is given)",
                "fast": "how the steps execute (train/fast.py); nothing learned changes beyond rounding",
                "augment": "random augmentations of every training batch"}


def render() -> str:
    lines = [HEADER.rstrip(), "", "## `TrainConfig`"] + _table(config.TrainConfig, "")
    for name, cls in config.TABLES.items():
        lines += ["", f"## `[{name}]`: {TABLE_TITLES[name]}"] + _table(cls, f"{name}.")
    moved = ", ".join(f"`{old}` → `{new}`" for old, new in config.MOVED_INTO_TABLES.items())
    lines += ["", f"Fields that moved into a table still read from their flat names (files and checkpoints written "
                  f"before): {moved}."]
    return "\n".join(lines) + "\n"


def toml_value(value) -> str:
    """One value in TOML (strings through JSON's escapes, which TOML's basic strings share)."""
    import json
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):   # repr is valid TOML: 0.001, 1e-05, inf, -inf, nan
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)


def config_toml(cfg, header: str = "") -> str:
    """A TrainConfig as a TOML file `duiit train --config` reads back to the same configuration
    (unset fields are left out: they stay unset)."""
    data = cfg.to_dict()
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"{k} = {toml_value(v)}" for k, v in data.items() if k not in config.TABLES and v is not None]
    for name in config.TABLES:
        lines += ["", f"[{name}]"] + [f"{k} = {toml_value(v)}" for k, v in data[name].items() if v is not None]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
