"""Image readers: every reader returns (S, H, W) float32 in the file's native units."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DuiitDataError

IMAGE_SUFFIXES = (".png",)
ARRAY_SUFFIXES = (".npy",)
SUPPORTED_SUFFIXES = IMAGE_SUFFIXES + ARRAY_SUFFIXES


def read_slices(path) -> np.ndarray:
    """Read a 2D image or a stack of slices as (S, H, W) float32, checked for finite values."""
    path = Path(path)
    if not path.exists():
        raise DuiitDataError(path, "file not found")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        slices = _read_png(path)
    elif suffix in ARRAY_SUFFIXES:
        slices = _read_npy(path)
    else:
        raise DuiitDataError(path, f"unsupported file type {suffix or '(none)'}; "
                                   f"supported: {', '.join(SUPPORTED_SUFFIXES)}")
    if not np.isfinite(slices).all():
        raise DuiitDataError(path, "contains NaN or Inf values")
    return slices


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "L", "F"):
                arr = np.asarray(img)
            elif img.mode in ("RGB", "RGBA", "LA", "P"):
                arr = np.asarray(img.convert("L"))
            else:
                raise DuiitDataError(path, f"unsupported PNG mode {img.mode}")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DuiitDataError(path, f"not a readable image ({exc.__class__.__name__}: {exc})") from None
    return arr.astype(np.float32)[None]


def _read_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
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


def write_png16(path, image: np.ndarray) -> None:
    """Write a (H, W) uint16 image as a 16-bit greyscale PNG, atomically."""
    from PIL import Image
    from ..io import atomic_path
    if image.dtype != np.uint16 or image.ndim != 2:
        raise ValueError("write_png16 takes a 2D uint16 array")
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
