"""Per-modality intensity mapping from native units to the network's [-1, 1] range."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Intensity:
    """How each modality maps to [-1, 1] (TrainConfig's ct_window, mri_percentiles, pet_percentile)."""
    ct_window: tuple = (40.0, 80.0)       # level, width in HU: the clinical brain window
    mri_percentiles: tuple = (1.0, 99.0)  # per volume
    pet_percentile: float = 100.0         # per volume: 100 = the maximum


def ct_window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """Hounsfield units → [-1, 1] through the window [level - width/2, level + width/2]."""
    lo = level - width / 2.0
    return np.clip((hu - lo) / width, 0.0, 1.0) * 2.0 - 1.0


def mri_percentiles(volume: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.0) -> np.ndarray:
    """Per-volume robust scaling: the lo/hi percentiles map to -1/1 (MRI has no absolute unit)."""
    lo, hi = np.percentile(volume, [lo_pct, hi_pct])
    return np.clip((volume - lo) / max(hi - lo, 1e-6), 0.0, 1.0) * 2.0 - 1.0


def pet_max(volume: np.ndarray, percentile: float = 100.0) -> np.ndarray:
    """Per-volume maximum (or a high percentile, robust to hot spots) → 1, zero → -1: uptake is
    relative within a scan."""
    peak = max(float(np.percentile(volume, percentile)), 1e-6)
    return np.clip(volume / peak, 0.0, 1.0) * 2.0 - 1.0


def normalize_volume(volume: np.ndarray, modality: str, intensity: Intensity = Intensity()) -> np.ndarray:
    if modality == "ct":
        out = ct_window(volume, *intensity.ct_window)
    elif modality == "mri":
        out = mri_percentiles(volume, *intensity.mri_percentiles)
    elif modality == "pet":
        out = pet_max(volume, intensity.pet_percentile)
    else:
        raise ValueError(f"unknown modality {modality!r}")
    return out.astype(np.float32)
