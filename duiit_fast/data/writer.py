"""Write phantom patients to disk as ordinary labelled datasets (images + labels.csv)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..data.datasets import native_size, phantom_cohorts
from ..io import atomic_path, staged_folder, write_text
from ..paths import FileNames, confined
from . import phantoms

CT_PNG_INTERCEPT = -1024.0  # 16-bit CT stores HU + 1024, as most CT exports do


def write_png16(path, image: np.ndarray, slope: float = 1.0, intercept: float = 0.0) -> None:
    """Write a (H, W) uint16 image as a 16-bit greyscale PNG, atomically. The map to native units
    (value·slope + intercept) travels in the file's text chunks (readers.PNG_SCALE_KEYS), so a file
    copied out of its dataset keeps its units."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo
    from .readers import PNG_SCALE_KEYS
    if image.dtype != np.uint16 or image.ndim != 2:
        raise ValueError("write_png16 takes a 2D uint16 array")
    info = PngInfo()
    info.add_text(PNG_SCALE_KEYS[0], repr(float(slope)))
    info.add_text(PNG_SCALE_KEYS[1], repr(float(intercept)))
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", pnginfo=info)


def write_phantom_dataset(out, pc, modalities=("ct", "mri", "pet"), fmt: str = "png",
                          progress: bool = False, overwrite: bool = False) -> dict:
    """One folder per modality under `out`, built beside it and swapped in complete. CT patients
    are the cohort's CT train patients."""
    cohorts = phantom_cohorts(pc)
    written = {}
    with staged_folder(out, overwrite) as stage:
        for modality in modalities:
            cohort = cohorts["ct_train"] if modality == "ct" else cohorts[modality]
            folder = stage / modality
            folder.mkdir()
            iterator = cohort
            if progress:
                from tqdm.auto import tqdm
                iterator = tqdm(cohort, desc=f"writing {modality}", leave=False, disable=None)
            rows, names = [], FileNames()
            for anat in iterator:
                volume = phantoms.render_patient(anat, modality, native_size(pc, modality), pc.slices_per_patient,
                                                 pc.seed, pc.mri_contrast)
                rows += _write_patient(folder, names(anat.patient_id), anat, modality, volume, fmt)
            _write_labels(folder / "labels.csv", rows)
            files = sum(1 for p in folder.rglob("*") if p.is_file() and p.name != "labels.csv")
            written[modality] = (Path(out) / modality, len(cohort), files)
    return written


def _write_patient(folder: Path, name: str, anat, modality: str, volume: np.ndarray, fmt: str) -> list[dict]:
    row = {"patient_id": anat.patient_id, "age": f"{anat.age:.2f}"}
    if fmt == "dicom":
        write_dicom_series(confined(folder, name), volume, modality, anat.patient_id)
        return [{**row, "path": name}]
    if fmt == "nifti":
        write_nifti(confined(folder, f"{name}.nii.gz"), volume)
        return [{**row, "path": f"{name}.nii.gz"}]
    if fmt == "npy":
        with atomic_path(confined(folder, f"{name}.npy")) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, volume.astype(np.float32))
        return [{**row, "path": f"{name}.npy"}]
    if modality == "ct":
        slope, intercept = 1.0, CT_PNG_INTERCEPT
    else:  # MRI and PET have arbitrary units: use the 16-bit range of this volume
        slope, intercept = max(float(volume.max()), 1e-6) / 65535.0, 0.0
    stored = np.clip(np.round((volume - intercept) / slope), 0, 65535).astype(np.uint16)
    rows = []
    for i, image in enumerate(stored):
        rel = f"{name}/slice_{i:03d}.png"
        write_png16(confined(folder, rel), image, slope, intercept)
        rows.append({**row, "path": rel, "rescale_slope": repr(slope), "rescale_intercept": repr(intercept)})
    return rows


def _write_labels(path: Path, rows: list[dict]) -> None:
    fields = list(rows[0].keys())
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


# Geometry written with the phantoms: a 240 mm field of view, 5 mm slices (the paper's CT has
# about 30 slices per patient).
FIELD_OF_VIEW_MM = 240.0
SLICE_THICKNESS_MM = 5.0
_SOP_CLASS = {"ct": "1.2.840.10008.5.1.4.1.1.2", "mri": "1.2.840.10008.5.1.4.1.1.4",
              "pet": "1.2.840.10008.5.1.4.1.1.128"}


def write_nifti(path, slices: np.ndarray) -> None:
    """(S, H, W) radiological axial slices → a RAS+ NIfTI volume, written atomically."""
    import nibabel as nib
    from .readers import slices_to_ras_volume
    spacing = FIELD_OF_VIEW_MM / slices.shape[-1]
    affine = np.diag([spacing, spacing, SLICE_THICKNESS_MM, 1.0])
    image = nib.Nifti1Image(slices_to_ras_volume(slices.astype(np.float32)), affine)
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))


def write_dicom_series(folder, slices: np.ndarray, modality: str, patient_id: str) -> None:
    """(S, H, W) native-unit slices → one DICOM file per slice in `folder`, uint16 with
    RescaleSlope/RescaleIntercept (CT: HU = stored - 1024). Files are named in reverse order of
    position, so readers must sort by ImagePositionPatient rather than by name."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if modality == "ct":
        slope, intercept = 1.0, CT_PNG_INTERCEPT
    else:
        slope, intercept = max(float(slices.max()), 1e-6) / 65535.0, 0.0
    stored = np.clip(np.round((slices - intercept) / slope), 0, 65535).astype(np.uint16)
    study, series = generate_uid(), generate_uid()
    spacing = FIELD_OF_VIEW_MM / slices.shape[-1]
    for i, image in enumerate(stored):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = _SOP_CLASS[modality]
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality = {"ct": "CT", "mri": "MR", "pet": "PT"}[modality]
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = patient_id, study, series
        ds.InstanceNumber = i + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-FIELD_OF_VIEW_MM / 2, -FIELD_OF_VIEW_MM / 2, i * SLICE_THICKNESS_MM]
        ds.PixelSpacing = [spacing, spacing]
        ds.SliceThickness = SLICE_THICKNESS_MM
        ds.Rows, ds.Columns = image.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", f"{intercept:.10g}"
        ds.PixelData = image.tobytes()
        with atomic_path(folder / f"IM{len(stored) - i:04d}.dcm") as tmp:
            ds.save_as(str(tmp), enforce_file_format=True)
