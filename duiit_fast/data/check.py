"""`duiit data check`: validate dataset folders and summarise what they hold."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DuiitDataError
from .datasets import read_folder

MODALITY_FOLDERS = ("ct", "mri", "pet")


def datasets_of(target) -> dict[str, Path]:
    """modality → dataset folder, for a dataset folder, a folder of ct/mri/pet datasets or a config."""
    target = Path(target)
    if target.is_file() and target.suffix == ".toml":
        from ..config import TrainConfig
        cfg = TrainConfig.from_toml(target)
        found = {m: Path(getattr(cfg, m)) for m in MODALITY_FOLDERS if getattr(cfg, m)}
        if not found:
            raise DuiitDataError(target, "config names no dataset folder (ct / mri / pet)")
        return found
    if not target.is_dir():
        raise DuiitDataError(target, "neither a dataset folder nor a TOML config")
    if (target / "labels.csv").is_file():
        modality = target.name.lower() if target.name.lower() in MODALITY_FOLDERS else "ct"
        return {modality: target}
    found = {m: target / m for m in MODALITY_FOLDERS if (target / m / "labels.csv").is_file()}
    if not found:
        raise DuiitDataError(target, "no labels.csv here nor in ct/, mri/ or pet/ subfolders")
    return found


def summarise(modality: str, folder) -> str:
    ages = np.array([age for _, age, _ in folder.volumes])
    shapes = sorted({vol.shape[1:] for _, _, vol in folder.volumes})
    n_slices = sum(vol.shape[0] for _, _, vol in folder.volumes)
    lo = min(float(vol.min()) for _, _, vol in folder.volumes)
    hi = max(float(vol.max()) for _, _, vol in folder.volumes)
    p1, p99 = np.percentile(np.concatenate([vol.ravel()[::97] for _, _, vol in folder.volumes]), [1, 99])
    sizes = ", ".join(f"{h}×{w}" for h, w in shapes)
    lines = [f"{modality}: {folder.root}",
             f"  {n_slices} slices, {len(folder.volumes)} patients, ages {ages.min():.1f}–{ages.max():.1f} "
             f"(mean {ages.mean():.1f})",
             f"  native resolution(s): {sizes}",
             f"  intensities: min {lo:.4g}, max {hi:.4g}, 1st–99th percentile {p1:.4g}–{p99:.4g}"]
    if folder.skipped:
        lines.append(f"  skipped {len(folder.skipped)} bad file(s):")
        lines += [f"    {path}: {problem}" for path, problem in folder.skipped]
    return "\n".join(lines)


def check_target(target, on_bad_file: str = "error") -> tuple[str, bool]:
    """The report and whether everything was clean; the first bad file raises unless skipping."""
    parts, clean = [], True
    for modality, root in datasets_of(target).items():
        folder = read_folder(root, on_bad_file, modality=modality)
        clean = clean and not folder.skipped
        parts.append(summarise(modality, folder))
    return "\n".join(parts), clean
