"""Write phantom patients to disk as ordinary labelled datasets (images + labels.csv)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..data.datasets import native_size, phantom_cohorts
from ..io import atomic_path, write_text
from . import phantoms
from .readers import write_png16

CT_PNG_INTERCEPT = -1024.0  # 16-bit CT stores HU + 1024, as most CT exports do


def write_phantom_dataset(out, pc, modalities=("ct", "mri", "pet"), fmt: str = "png",
                          progress: bool = False) -> dict:
    """One folder per modality under `out`. CT patients are the cohort's CT train patients."""
    out = Path(out)
    cohorts = phantom_cohorts(pc)
    written = {}
    for modality in modalities:
        cohort = cohorts["ct_train"] if modality == "ct" else cohorts[modality]
        folder = out / modality
        folder.mkdir(parents=True, exist_ok=True)
        iterator = cohort
        if progress:
            from tqdm.auto import tqdm
            iterator = tqdm(cohort, desc=f"writing {modality}", leave=False)
        rows = []
        for anat in iterator:
            volume = phantoms.render_patient(anat, modality, native_size(pc, modality), pc.slices_per_patient, pc.seed)
            rows += _write_patient(folder, anat, modality, volume, fmt)
        _write_labels(folder / "labels.csv", rows)
        written[modality] = (folder, len(cohort), len(rows))
    return written


def _write_patient(folder: Path, anat, modality: str, volume: np.ndarray, fmt: str) -> list[dict]:
    if fmt == "npy":
        name = f"{anat.patient_id}.npy"
        with atomic_path(folder / name) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, volume.astype(np.float32))
        return [{"patient_id": anat.patient_id, "age": f"{anat.age:.2f}", "path": name}]
    if modality == "ct":
        slope, intercept = 1.0, CT_PNG_INTERCEPT
    else:  # MRI and PET have arbitrary units: use the 16-bit range of this volume
        slope, intercept = max(float(volume.max()), 1e-6) / 65535.0, 0.0
    stored = np.clip(np.round((volume - intercept) / slope), 0, 65535).astype(np.uint16)
    rows = []
    for i, image in enumerate(stored):
        name = f"{anat.patient_id}/slice_{i:03d}.png"
        write_png16(folder / name, image)
        rows.append({"patient_id": anat.patient_id, "age": f"{anat.age:.2f}", "path": name,
                     "rescale_slope": repr(slope), "rescale_intercept": repr(intercept)})
    return rows


def _write_labels(path: Path, rows: list[dict]) -> None:
    fields = list(rows[0].keys())
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())
