"""Image readers: `read_slices(path)` returns (S, H, W) float32 in the file's native units.

Formats: PNG / TIFF (8- and 16-bit, multi-page TIFF as a stack) and JPEG through Pillow; .npy
(2D slice or 3D stack); NIfTI .nii / .nii.gz through nibabel (3D volumes, reoriented to RAS+ and
sliced axially, so the affine decides which way is up); DICOM through pydicom: single files,
multi-frame files and series folders (slices sorted along the slice normal, RescaleSlope and
RescaleIntercept applied, so CT comes out in Hounsfield units).

Axial slices from NIfTI and DICOM are returned with rows running anterior → posterior and
columns running from the patient's right to left (radiological display).
Every problem is a DuiitDataError naming the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DuiitDataError
from .labels import parse_number

PIL_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npy",)
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom")
SUPPORTED_SUFFIXES = PIL_SUFFIXES + ARRAY_SUFFIXES + NIFTI_SUFFIXES + DICOM_SUFFIXES
# Pixels one file may declare (a 2048-slice stack of 1024² is 2^31): headers are checked against
# it before anything is allocated, so a hostile header cannot exhaust memory.
MAX_PIXELS = 2 ** 31
# A PNG written by duiit stores its map to native units in text chunks (the DICOM keywords): a file
# copied out of its dataset still reads as HU. Other files carry none (their labels.csv may).
PNG_SCALE_KEYS = ("RescaleSlope", "RescaleIntercept")
# Smallest side and most elongated shape of a slice: a 1×10000 strip is no image of a head.
MIN_SIDE, MAX_ASPECT = 8, 8


def file_kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    suffix = path.suffix.lower()
    if suffix in PIL_SUFFIXES:
        return "image"
    if suffix in ARRAY_SUFFIXES:
        return "npy"
    if suffix in DICOM_SUFFIXES:
        return "dicom"
    return None


DICOM_MODALITY = {"ct": "CT", "mri": "MR", "pet": "PT"}


def read_slices(path, modality: str | None = None) -> np.ndarray:
    """Read an image, stack, volume or DICOM series folder as (S, H, W) float32. With `modality`,
    a DICOM file whose Modality tag says otherwise (an MR series in the CT folder) is an error."""
    path = Path(path)
    if not path.exists():
        raise DuiitDataError(path, "file not found")
    if not path.is_dir() and not path.is_file():   # a FIFO or device would block or never end
        raise DuiitDataError(path, "not a regular file")
    if path.is_dir():
        slices = read_dicom_series(path, modality)
    else:
        kind = file_kind(path)
        if kind is None:
            raise DuiitDataError(path, f"unsupported file type {''.join(path.suffixes) or '(none)'}; "
                                       f"supported: {', '.join(SUPPORTED_SUFFIXES)} and DICOM series folders")
        if kind == "dicom":
            slices = read_dicom_file(path, modality)
        else:
            slices = {"image": _read_pil, "npy": _read_npy, "nifti": _read_nifti}[kind](path)
    if slices.ndim != 3 or min(slices.shape) == 0:
        raise DuiitDataError(path, f"no image data (shape {slices.shape})")
    h, w = slices.shape[1:]
    if min(h, w) < MIN_SIDE or max(h, w) > MAX_ASPECT * min(h, w):
        raise DuiitDataError(path, f"a {h}×{w} slice is not a plausible image (sides of at least {MIN_SIDE} "
                                   f"pixels, at most {MAX_ASPECT}:1)")
    if not np.isfinite(slices).all():
        raise DuiitDataError(path, "contains NaN or Inf values")
    return np.ascontiguousarray(slices, dtype=np.float32)


# --- Pillow: PNG, TIFF, JPEG --------------------------------------------------------------------

def check_pixel_count(path: Path, shape) -> None:
    n = int(np.prod([int(s) for s in shape], dtype=np.float64))
    if n > MAX_PIXELS:
        raise DuiitDataError(path, f"header declares {' x '.join(str(int(s)) for s in shape)} values, "
                                   f"over the limit of {MAX_PIXELS} (damaged or hostile file?)")


def _read_pil(path: Path) -> np.ndarray:
    from PIL import Image, ImageSequence, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            check_pixel_count(path, (getattr(img, "n_frames", 1), img.size[1], img.size[0]))
            frames = [_pil_frame(path, frame) for frame in ImageSequence.Iterator(img)]
    except Image.DecompressionBombError as exc:
        raise DuiitDataError(path, f"image too large to decode safely ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DuiitDataError(path, f"not a readable image ({exc.__class__.__name__}: {exc})") from None
    if len({f.shape for f in frames}) != 1:
        raise DuiitDataError(path, "pages of different sizes")
    stack = np.stack(frames)
    own = _stored_scale(path, getattr(img, "info", {}))
    return stack if own is None else stack * np.float32(own[0]) + np.float32(own[1])


def pil_scale(path: Path):
    """(Pillow mode, (slope, intercept) or None) of an image file; None for other kinds of file.
    The scale is the one stored in the file's own text chunks (PNG_SCALE_KEYS)."""
    from PIL import Image, UnidentifiedImageError
    if file_kind(Path(path)) != "image":
        return None
    try:
        with Image.open(path) as img:
            return img.mode, _stored_scale(Path(path), img.info)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DuiitDataError(path, f"not a readable image ({exc.__class__.__name__}: {exc})") from None


def _stored_scale(path: Path, info: dict):
    if PNG_SCALE_KEYS[0] not in info and PNG_SCALE_KEYS[1] not in info:
        return None
    slope = parse_number(path, PNG_SCALE_KEYS[0], info.get(PNG_SCALE_KEYS[0], "1"))
    intercept = parse_number(path, PNG_SCALE_KEYS[1], info.get(PNG_SCALE_KEYS[1], "0"))
    if slope == 0 or abs(slope) > 1e6 or abs(intercept) > 1e6:
        raise DuiitDataError(path, f"stored scale (slope {slope:g}, intercept {intercept:g}) is not plausible")
    return slope, intercept


def _pil_frame(path: Path, frame) -> np.ndarray:
    frame.load()
    if frame.mode in ("I;16", "I;16B", "I;16L", "I", "L", "F"):
        return np.asarray(frame).astype(np.float32)
    if frame.mode in ("RGB", "RGBA", "LA", "P", "1"):
        return np.asarray(frame.convert("L")).astype(np.float32)
    raise DuiitDataError(path, f"unsupported image mode {frame.mode}")


# --- numpy --------------------------------------------------------------------------------------

def _read_npy(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as f:   # the header first: its shape must fit the file and the limit
            major, _ = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
        check_pixel_count(path, shape)
        if dtype.hasobject:
            raise DuiitDataError(path, "array holds Python objects, not numbers")
        expected = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        if expected > path.stat().st_size:
            raise DuiitDataError(path, f"header declares {expected} bytes of data but the file has "
                                       f"{path.stat().st_size} (truncated or damaged)")
        arr = np.load(path, allow_pickle=False)
    except DuiitDataError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise DuiitDataError(path, f"not a readable .npy array ({exc})") from None
    if arr.dtype.kind not in "uif":
        raise DuiitDataError(path, f"array dtype {arr.dtype} is not numeric")
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim != 3:
        raise DuiitDataError(path, f"expected a 2D slice or a 3D (S, H, W) stack, got shape {arr.shape}")
    if min(arr.shape) == 0:
        raise DuiitDataError(path, f"empty array of shape {arr.shape}")
    return arr.astype(np.float32)


# --- NIfTI --------------------------------------------------------------------------------------

def _read_nifti(path: Path) -> np.ndarray:
    import nibabel as nib
    try:
        img = nib.load(str(path))
        shape = img.shape
        if len(shape) == 4 and shape[3] == 1:
            img = img.slicer[..., 0]
        elif len(shape) != 3:
            raise DuiitDataError(path, f"expected a 3D volume, got {len(shape)}D shape {shape} "
                                       "(split 4D series into one volume per file)")
        check_pixel_count(path, shape)
        _check_nifti_scaling(path, img)
        canonical = nib.as_closest_canonical(img)  # voxel axes → Right, Anterior, Superior
        data = np.asarray(canonical.dataobj, dtype=np.float32)  # scl_slope/inter applied
    except DuiitDataError:
        raise
    except Exception as exc:  # nibabel raises many types for damaged files
        raise DuiitDataError(path, f"not a readable NIfTI file ({exc.__class__.__name__}: {exc})") from None
    return ras_volume_to_slices(data)


def _check_nifti_scaling(path: Path, img) -> None:
    """nibabel replaces an infinite scl_slope / scl_inter by NaN ("no scaling") on loading and would
    read the raw values as the image's units: read the two fields from the file's own header and
    refuse them instead (NIfTI-1: float32 at bytes 112/116; NIfTI-2: float64 at 176/184)."""
    from nibabel.openers import ImageOpener
    with ImageOpener(str(path)) as f:
        head = f.read(192)
    for order in ("<", ">"):
        if len(head) >= 120 and int(np.frombuffer(head[:4], f"{order}i4")[0]) == 348:
            values = np.frombuffer(head[112:120], f"{order}f4")
            break
        if len(head) >= 192 and int(np.frombuffer(head[:4], f"{order}i4")[0]) == 540:
            values = np.frombuffer(head[176:192], f"{order}f8")
            break
    else:
        return   # nibabel accepted a header this check does not know: nothing to add
    for key, value in zip(("scl_slope", "scl_inter"), values):
        if np.isinf(value):
            raise DuiitDataError(path, f"NIfTI header {key} is {float(value)}: the stored values have no usable scale")


def ras_volume_to_slices(data: np.ndarray) -> np.ndarray:
    """(R, A, S) voxel array → (S, H, W) axial slices, rows anterior→posterior, columns
    patient right→left (radiological view: the patient's right on the viewer's left)."""
    # In RAS+ voxel order +x points to the patient's Right, +y Anterior, +z Superior: rows take
    # y descending (anterior first), columns x descending (patient's right first).
    return np.ascontiguousarray(np.transpose(data, (2, 1, 0))[:, ::-1, ::-1])


def slices_to_ras_volume(slices: np.ndarray) -> np.ndarray:
    """Inverse of ras_volume_to_slices (for writers)."""
    return np.ascontiguousarray(np.transpose(slices[:, ::-1, ::-1], (2, 1, 0)))


# --- DICOM --------------------------------------------------------------------------------------

def _dcmread(path: Path, stop_before_pixels: bool = False):
    import pydicom
    from pydicom.errors import InvalidDicomError
    try:
        return pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        raise DuiitDataError(path, "not a DICOM file") from None
    except Exception as exc:
        raise DuiitDataError(path, f"unreadable DICOM ({exc.__class__.__name__}: {exc})") from None


def _pixels(path: Path, ds) -> np.ndarray:
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DuiitDataError(path, "DICOM without pixel data")
    try:
        arr = ds.pixel_array
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", str(syntax))
        if syntax is not None and getattr(syntax, "is_compressed", False):
            raise DuiitDataError(path, f"compressed DICOM ({name}) cannot be decoded here: install "
                                       "pylibjpeg with pylibjpeg-libjpeg / pylibjpeg-openjpeg, or gdcm") from None
        raise DuiitDataError(path, f"DICOM pixel data unreadable ({exc.__class__.__name__}: {exc})") from None
    arr = np.asarray(arr, dtype=np.float32)
    slope = _dicom_number(path, ds, "RescaleSlope", 1.0)
    intercept = _dicom_number(path, ds, "RescaleIntercept", 0.0)
    if slope == 0:
        raise DuiitDataError(path, "RescaleSlope is 0: every pixel would map to the intercept")
    return arr * slope + intercept


def _dicom_number(path: Path, ds, keyword: str, default: float) -> float:
    raw = ds.get(keyword, None)
    if raw is None or str(raw).strip() == "":
        return default
    return parse_number(path, keyword, str(raw).strip())


def read_dicom_file(path: Path, modality: str | None = None) -> np.ndarray:
    """A single-frame or multi-frame DICOM file as (S, H, W) in native units (HU for CT)."""
    ds = _dcmread(path)
    _check_modality(path, ds, modality)
    return _frames(path, ds)


def _check_modality(path: Path, ds, modality: str | None) -> None:
    found = str(ds.get("Modality", "") or "").strip().upper()
    expected = DICOM_MODALITY.get(modality or "")
    if expected and found and found != expected:
        raise DuiitDataError(path, f"DICOM Modality is {found}, but this is the {modality} dataset ({expected})")


def _frames(path: Path, ds) -> np.ndarray:
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    check_pixel_count(path, (_dicom_int(path, ds, "NumberOfFrames", 1), rows, cols))
    arr = _pixels(path, ds)
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim == 3 and _dicom_int(path, ds, "NumberOfFrames", 1) > 1:
        return arr
    raise DuiitDataError(path, f"unsupported DICOM pixel layout {arr.shape} (colour or multi-sample)")


def _dicom_int(path: Path, ds, keyword: str, default: int) -> int:
    raw = ds.get(keyword, None)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        return int(str(raw).strip())
    except ValueError:
        raise DuiitDataError(path, f"{keyword} {str(raw)!r} is not an integer") from None


def _slice_position(ds) -> float | None:
    """Position along the slice normal (ImageOrientationPatient × ImagePositionPatient)."""
    try:
        row, col = np.asarray(ds.ImageOrientationPatient[:3], float), np.asarray(ds.ImageOrientationPatient[3:], float)
        return float(np.dot(np.cross(row, col), np.asarray(ds.ImagePositionPatient, float)))
    except (AttributeError, ValueError, TypeError, IndexError):
        return None


def read_dicom_series(folder: Path, modality: str | None = None) -> np.ndarray:
    """All DICOM files of a folder as one series, sorted by position along the slice normal
    (InstanceNumber where positions are missing). In-plane orientation is taken as stored: the
    usual axial ImageOrientationPatient (1,0,0 / 0,1,0) is already radiological."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DuiitDataError(folder, "empty folder (expected a DICOM series)")
    entries, series, orientations = [], set(), set()
    for f in files:
        ds = _dcmread(f)
        _check_modality(f, ds, modality)
        series.add(str(ds.get("SeriesInstanceUID", "")))
        orientations.add(tuple(np.round(np.asarray(ds.get("ImageOrientationPatient", []) or [], float), 3)))
        entries.append((_slice_position(ds), _dicom_int(f, ds, "InstanceNumber", 0), f, _frames(f, ds)))
    if len(series) > 1:
        raise DuiitDataError(folder, f"folder mixes {len(series)} DICOM series (SeriesInstanceUID): "
                                     "put each series in its own folder")
    if len(orientations) > 1:
        raise DuiitDataError(folder, "DICOM slices with different orientations (ImageOrientationPatient) "
                                     "cannot form one volume")
    if len({e[3].shape[1:] for e in entries}) != 1:
        raise DuiitDataError(folder, "DICOM series with slices of different sizes")
    if all(e[0] is not None for e in entries):
        entries.sort(key=lambda e: e[0])
        for a, b in zip(entries, entries[1:]):
            if np.isclose(a[0], b[0], rtol=0, atol=1e-3):   # within a micrometre: the same place
                raise DuiitDataError(folder, f"{a[2].name} and {b[2].name} lie at one position along the "
                                             "slice normal (duplicate slices or two acquisitions in one folder)")
    else:
        entries.sort(key=lambda e: e[1])
    # Ascending position along the normal is inferior → superior for axial series.
    volume = np.concatenate([e[3] for e in entries])
    if all(e[0] is not None for e in entries) and len(entries) == len(volume) > 1:
        return _reorient_series(folder, volume, _dcmread(entries[0][2], stop_before_pixels=True),
                                [e[0] for e in entries])
    return volume


def _reorient_series(folder: Path, volume: np.ndarray, first, positions) -> np.ndarray:
    """Build the series' affine from ImageOrientationPatient / ImagePositionPatient / PixelSpacing
    and reorient like NIfTI (RAS+, then axial slices): sagittal and coronal series come out axial,
    standard axial series are unchanged."""
    import nibabel as nib
    iop = np.asarray(first.ImageOrientationPatient, float)
    row_dir, col_dir = iop[:3], iop[3:]          # along a row (column index), down a column (row index)
    normal = np.cross(row_dir, col_dir)
    try:
        d_row, d_col = (float(v) for v in first.PixelSpacing)
    except (AttributeError, TypeError, ValueError):
        d_row = d_col = 1.0
    gaps = np.diff(positions)
    d_slice = float(np.median(gaps)) if len(gaps) else 1.0
    if d_slice <= 0:
        raise DuiitDataError(folder, "DICOM slices share one position (duplicate slices?)")
    affine = np.eye(4)
    # Voxel axes (column j, row i, slice s) → patient LPS millimetres; then LPS → RAS.
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = row_dir * d_col, col_dir * d_row, normal * d_slice
    affine[:3, 3] = np.asarray(first.ImagePositionPatient, float)
    affine[:2] *= -1
    img = nib.Nifti1Image(np.ascontiguousarray(np.transpose(volume, (2, 1, 0))), affine)
    return ras_volume_to_slices(np.asarray(nib.as_closest_canonical(img).dataobj, dtype=np.float32))
