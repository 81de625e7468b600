"""A trained model in use, from its checkpoint alone: predict ages, translate sources into CT-like
datasets, export the augmented training set (real CT + translated sources) for other frameworks.

Inputs are dataset folders (labels.csv + images, as `duiit train` reads them) or image files /
DICOM series folders given directly (then the file's stem is the patient and no age is known).
Every output folder is built beside its destination and swapped in complete (io.staged_folder), so
it holds the old content or the new, never a mix; ids become file names through paths.FileNames,
never as paths. A CT-like dataset is 16-bit PNG slices (their HU scale stored in the file) or NIfTI
volumes in HU, with a labels.csv that `duiit train` reads back.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch

from .data.datasets import read_folder, resize_slices
from .data.intensity import normalize_volume
from .data.readers import pil_scale, read_slices
from .errors import DuiitConfigError, DuiitDataError
from .io import staged_folder, write_text
from .paths import FileNames, confined

# 16-bit PNG for CT-like output: HU = stored · slope + intercept over the window with a 10 HU
# margin, so the window's 80 HU get ~650 levels per HU instead of 1 (HU + 1024 would quantise a
# translated image to 80 grey levels).
PNG_MARGIN_HU = 10.0


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".npy", ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_inputs(paths, modality: str, on_bad_file: str = "error", skipped: list | None = None,
                png_rescale=None) -> list[tuple[str, float | None, np.ndarray]]:
    """(patient_id, age or None, (S, H, W) native-unit volume) for every input: a dataset folder
    contributes its labelled patients, a file or series folder one unlabelled volume. Files a
    folder left out under on_bad_file="skip" are appended to `skipped` as (path, problem).
    png_rescale = (slope, intercept) maps a bare PNG/TIFF/JPEG's stored values to native units
    where the file does not carry its own scale."""
    volumes = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and (path / "labels.csv").is_file():
            folder = read_folder(path, on_bad_file, modality=modality)
            volumes += folder.volumes
            if skipped is not None:
                skipped += folder.skipped
        elif path.exists():
            volumes.append((_stem(path), None, _read_bare(path, modality, png_rescale)))
        else:
            raise DuiitDataError(path, "file not found")
    if not volumes:
        raise DuiitConfigError("no input images given")
    ids = [v[0] for v in volumes]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DuiitConfigError(f"patient {dup!r} appears in two inputs; give each patient once")
    return volumes


def _read_bare(path: Path, modality: str, png_rescale) -> np.ndarray:
    """A file given without labels.csv. CT must be in HU: an integer PNG/TIFF/JPEG with no scale of
    its own (a tool's HU + 1024, a windowed 8-bit export) would be read as HU and give wrong ages."""
    slices = read_slices(path, modality)
    info = pil_scale(path) if not path.is_dir() else None
    if info is None:                       # not a Pillow image: DICOM / NIfTI / .npy carry their units
        return slices
    mode, own = info
    if own is not None:
        if png_rescale is not None and not np.allclose(own, png_rescale, rtol=1e-9, atol=0):
            raise DuiitDataError(path, f"stores its own scale (slope {own[0]:g}, intercept {own[1]:g}), "
                                       f"which --png-rescale {png_rescale[0]:g} {png_rescale[1]:g} contradicts")
        return slices                      # read_slices applied it
    if png_rescale is not None:
        return slices * np.float32(png_rescale[0]) + np.float32(png_rescale[1])
    if modality == "ct" and mode != "F":
        raise DuiitDataError(path, f"{mode} image without a stored scale cannot be read as HU: give "
                                   "--png-rescale SLOPE INTERCEPT (1 -1024 for HU + 1024), or put it in a "
                                   "dataset folder whose labels.csv has rescale_slope / rescale_intercept")
    return slices


def _as_model_input(trainer, volume: np.ndarray, modality: str) -> torch.Tensor:
    norm = normalize_volume(volume, modality, trainer.cfg.intensity)
    return resize_slices(norm, trainer.cfg.image_size)


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def predict(trainer, volumes, out_dir, progress=None, overwrite: bool = False) -> dict:
    """Ages per CT slice and per patient (mean of its slices) → OUT/slices.csv, OUT/patients.csv.
    Where ages are known, the MSE (years²) is returned too."""
    slice_rows, patient_rows = [], []
    for patient_id, age, volume in (progress(volumes, desc="predicting") if progress else volumes):
        ages = trainer.predict(_as_model_input(trainer, volume, "ct")).numpy()
        for i, a in enumerate(ages):
            slice_rows.append({"patient_id": patient_id, "slice": i, "predicted_age": f"{a:.2f}",
                               "age": "" if age is None else f"{age:.2f}"})
        patient_rows.append({"patient_id": patient_id, "slices": len(ages), "predicted_age": f"{ages.mean():.2f}",
                             "age": "" if age is None else f"{age:.2f}"})
    with staged_folder(out_dir, overwrite) as stage:
        write_text(stage / "slices.csv", _csv(slice_rows))
        write_text(stage / "patients.csv", _csv(patient_rows))
    known = [(float(r["predicted_age"]), float(r["age"])) for r in slice_rows if r["age"] != ""]
    summary = {"patients": len(patient_rows), "slices": len(slice_rows)}
    if known:
        p, a = np.array(known).T
        summary["mse"] = float(np.mean((p - a) ** 2))
    return summary


def ct_hu(trainer, images: torch.Tensor) -> np.ndarray:
    """Network-range CT-like images (N, 1, S, S) in [-1, 1] → (N, S, S) HU through the CT window."""
    level, width = trainer.cfg.ct_window
    return ((images[:, 0].numpy() + 1.0) / 2.0 * width + (level - width / 2.0)).astype(np.float32)


def write_ct_dataset(trainer, patients, out_dir, fmt: str = "png", progress=None, overwrite: bool = False) -> int:
    """patients: iterable of (patient_id, age, (S, H, W) HU). Writes OUT/labels.csv and the images
    (one folder or volume per patient, named after its id by paths.FileNames); returns the number
    of slices. The folder appears complete or not at all."""
    from .data.writer import write_nifti, write_png16
    if fmt not in ("png", "nifti"):
        raise DuiitConfigError(f"--format must be png or nifti, got {fmt!r}")
    level, width = trainer.cfg.ct_window
    intercept = level - width / 2.0 - PNG_MARGIN_HU
    slope = (width + 2 * PNG_MARGIN_HU) / 65535.0
    rows, count, names = [], 0, FileNames()
    with staged_folder(out_dir, overwrite) as stage:
        for patient_id, age, hu in (progress(patients, desc="writing") if progress else patients):
            name = names(patient_id)
            if fmt == "nifti":
                write_nifti(confined(stage, f"{name}.nii.gz"), hu)
                rows.append({"patient_id": patient_id, "age": f"{age:.2f}", "path": f"{name}.nii.gz"})
            else:
                stored = np.clip(np.round((hu - intercept) / slope), 0, 65535).astype(np.uint16)
                for i, image in enumerate(stored):
                    rel = f"{name}/slice_{i:03d}.png"
                    write_png16(confined(stage, rel), image, slope, intercept)
                    rows.append({"patient_id": patient_id, "age": f"{age:.2f}", "path": rel,
                                 "rescale_slope": repr(slope), "rescale_intercept": repr(intercept)})
            count += len(hu)
        if not rows:
            raise DuiitConfigError("nothing to write")
        write_text(stage / "labels.csv", _csv(rows))
    return count


def _check_source(trainer, source: str) -> None:
    have = sorted(trainer.nets["G"]) if "G" in trainer.nets else []
    if source not in have:
        raise DuiitConfigError(f"this model translates {', '.join(have) or 'nothing'} (setting "
                               f"{trainer.cfg.setting}), not {source!r}")


def translated_patients(trainer, volumes, source: str):
    """(patient_id, age, HU volume) of each labelled source volume translated into CT style."""
    _check_source(trainer, source)
    for patient_id, age, volume in volumes:
        if age is None:
            raise DuiitConfigError(f"{patient_id}: translate needs labelled inputs (a dataset folder with "
                                   "labels.csv): the CT-like dataset it writes is labelled")
        yield patient_id, age, ct_hu(trainer, trainer.translate(_as_model_input(trainer, volume, source), source))


def export_training_set(trainer, out_dir, fmt: str = "png", progress=None, overwrite: bool = False) -> dict:
    """The augmented training set of the model's own run: its real CT training patients plus every
    source's training patients translated by G, as one labelled CT dataset (at the training size).
    Translated patients are named SOURCE-PATIENT so they stay apart from CT patients (an id that
    already starts with SOURCE-, as the phantom's mri-0007, keeps its name unless a CT patient has it)."""
    data = trainer.data
    ct = data.ct_train
    ct_ids = set(ct.patients)

    def translated_name(source, pid):
        return pid if pid.startswith(f"{source}-") and pid not in ct_ids else f"{source}-{pid}"

    def patients():
        for pid in ct.patients:
            mask = ct.patient_ids == pid
            yield pid, float(ct.ages[torch.from_numpy(mask)][0]), ct_hu(trainer, ct.images[torch.from_numpy(mask)])
        for source in sorted(trainer.nets["G"]) if "G" in trainer.nets else ():
            s = data.sources[source]
            for pid in s.patients:
                mask = torch.from_numpy(s.patient_ids == pid)
                yield (translated_name(source, pid), float(s.ages[mask][0]),
                       ct_hu(trainer, trainer.translate(s.images[mask], source)))
    slices = write_ct_dataset(trainer, list(patients()), out_dir, fmt, progress, overwrite)
    return {"slices": slices, "ct_patients": len(ct.patients),
            "translated_patients": sum(len(data.sources[k].patients) for k in trainer.nets.get("G", {}))}
