"""Procedural head phantoms: unpaired CT / MRI / PET patients whose anatomy carries their age.

The embedded default dataset. Each patient is an `Anatomy` drawn from a seed; it can be rendered
in any modality (the datasets we build stay unpaired, but rendering source patients directly as
CT gives the ORACLE bound: what a perfect translator would produce).

Ageing model (after the calibration notes in docs/phantom.md, which record what keeps the age
signal recoverable). Age a ~ U[20, 90], t = (a - 20)/70. A personal ageing speed te = t·exp(N(0, 0.08))
drives the atrophy markers, each with its own log-normal scatter (sd 0.15):
  ventricles   half-length 0.11·(1 + 0.9·m)          (ventricular enlargement)
  CSF rim      0.008 + 0.025·m between skull and brain (global atrophy)
  sulci        width 0.004 + 0.020·m                  (sulcal widening; sub-pixel → partial volume)
  cortex       grey-matter thickness 0.05·(1 - 0.25·m) (cortical thinning)
  lesions      Poisson(0.2 + 3·m²) white-matter lesions per slice near ventricle level
  bone         CT density 1450 - 550·t HU, T1 marrow signal 0.35 + 0.35·t
  PET          grey-matter FDG uptake 1 - 0.30·t (sd 0.07)
Lengths are in units of the half field of view. Label maps are drawn on a supersampled grid and
averaged down, so thin structures show up as partial volume.

Modalities: CT in Hounsfield units with 4 HU noise; MRI with a multiplicative bias field, per-patient
gain and Rician noise, in one of three contrasts (MRI_CONTRASTS): T1-like (the default and every
recorded experiment's: grey/white contrast reversed relative to CT, CSF and lesions dark as in CT,
bone dark, fat bright), T2-weighted (CSF and lesions bright, grey above white) or FLAIR (CSF
suppressed, lesions bright, grey above white), the last two computed from 3 T relaxation times
(RELAXATION_3T, sources in docs/phantom.md); FDG-like PET blurred, binned to half resolution with
Poisson counts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter

MODALITIES = ("ct", "mri", "pet")
MRI_CONTRASTS = ("t1", "t2", "flair")
DEFAULT_NATIVE_SIZE = {"ct": 650, "mri": 256, "pet": 128}
Z_RANGE = (-0.25, 0.85)

# Tissue labels of the label map.
AIR, SKIN, FAT, BONE, DIPLOE, CSF, GM, WM, DEEP_GM, LESION = range(10)
N_TISSUES = 10


@dataclass(frozen=True)
class Anatomy:
    """Everything that makes one patient: geometry, age markers and a seed for slice detail."""
    patient_id: str
    age: float
    t: float                      # (age - 20) / 70
    markers: dict                 # per-marker ageing: ventricles, rim, sulci, cortex, lesions, bone, marrow
    pet_gm_uptake: float
    head_axes: tuple              # semi-axes (left-right, front-back) at the widest slice
    rotation: float
    shift: tuple
    harmonics: tuple              # ((k, amplitude, phase), ...) of the head outline
    skull: float                  # skull thickness
    sulcus_angles: tuple
    sulcus_phases: tuple
    detail_seed: int
    mri_gain: float = 1.0
    mri_bias: tuple = field(default=(0.0, 0.0, 0.0))


def sample_anatomy(rng: np.random.Generator, patient_id: str, age: float | None = None) -> Anatomy:
    age = float(rng.uniform(20.0, 90.0)) if age is None else float(age)
    t = (age - 20.0) / 70.0
    te = t * float(np.exp(rng.normal(0.0, 0.08)))
    names = ("ventricles", "rim", "sulci", "cortex", "lesions", "bone", "marrow")
    markers = {n: te * float(np.exp(rng.normal(0.0, 0.15))) for n in names}
    markers["bone"] = t * float(np.exp(rng.normal(0.0, 0.15)))
    markers["marrow"] = t * float(np.exp(rng.normal(0.0, 0.15)))
    a = float(rng.uniform(0.74, 0.90))
    aspect = float(rng.uniform(0.76, 0.90))
    n_sulci = int(rng.integers(22, 33))
    return Anatomy(
        patient_id=patient_id, age=age, t=t, markers=markers,
        pet_gm_uptake=float(1.0 - 0.30 * t + rng.normal(0.0, 0.07)),
        head_axes=(a * aspect, a), rotation=float(rng.normal(0.0, 0.10)),
        shift=(float(rng.normal(0.0, 0.03)), float(rng.normal(0.0, 0.03))),
        harmonics=tuple((k, float(rng.normal(0.0, 0.015)), float(rng.uniform(0, 2 * np.pi)))
                        for k in range(2, 6)),
        skull=float(rng.uniform(0.040, 0.075)),
        sulcus_angles=tuple(np.sort(rng.uniform(-np.pi, np.pi, n_sulci)).tolist()),
        sulcus_phases=tuple(rng.uniform(0, 2 * np.pi, n_sulci).tolist()),
        detail_seed=int(rng.integers(0, 2**31 - 1)),
        mri_gain=float(np.exp(rng.normal(0.0, 0.1))),
        mri_bias=tuple(rng.normal(0.0, 0.08, 3).tolist()),
    )


def make_cohort(n: int, seed: int, prefix: str) -> list[Anatomy]:
    """n patients named prefix-0000...; the same (seed, prefix) always gives the same patients."""
    # The prefix enters the seed so that cohorts drawn with one seed are different people.
    key = [seed] + [ord(c) for c in prefix]
    rng = np.random.default_rng(key)
    return [sample_anatomy(rng, f"{prefix}-{i:04d}") for i in range(n)]


def slice_positions(n_slices: int) -> np.ndarray:
    return np.linspace(Z_RANGE[0], Z_RANGE[1], n_slices)


# ---------------------------------------------------------------------------------------------
# Geometry: one label map per slice


def _ellipse(x, y, cx, cy, ax, ay):
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0


def label_map(anat: Anatomy, z: float, size: int, slice_index: int = 0) -> np.ndarray:
    """Tissue labels (size, size) int8 of the axial slice at height z ∈ [-1, 1]."""
    coords = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    # Into head coordinates: undo the patient's shift and rotation.
    c, s = np.cos(anat.rotation), np.sin(anat.rotation)
    x0, y0 = xx - anat.shift[0], yy - anat.shift[1]
    x, y = c * x0 + s * y0, -s * x0 + c * y0

    scale = np.sqrt(max(1.0 - z * z, 1e-3))  # cross-section of a sphere-like head
    ax, ay = anat.head_axes[0] * scale, anat.head_axes[1] * scale
    theta = np.arctan2(y / ay, x / ax)
    outline = 1.0 + sum(amp * np.cos(k * theta + ph) for k, amp, ph in anat.harmonics)
    rho = np.sqrt((x / ax) ** 2 + (y / ay) ** 2) / outline
    radius = 0.5 * (ax + ay)
    depth = (1.0 - rho) * radius  # approximate distance inside the scalp surface

    m = anat.markers
    labels = np.full((size, size), AIR, dtype=np.int8)
    edges = np.cumsum([0.0, 0.012, 0.015, 0.3 * anat.skull, 0.4 * anat.skull, 0.3 * anat.skull,
                       0.008 + 0.025 * m["rim"]])
    for tissue, start in zip((SKIN, FAT, BONE, DIPLOE, BONE, CSF), edges[:-1]):
        labels[depth >= start] = tissue
    brain_depth = depth - edges[-1]
    brain = brain_depth >= 0
    gm_thickness = 0.05 * (1.0 - 0.25 * m["cortex"])
    labels[brain] = WM
    labels[brain & (brain_depth < gm_thickness)] = GM

    # Sulci: CSF clefts cutting through the cortex, their course wandering from slice to slice.
    half_width = 0.5 * (0.004 + 0.020 * m["sulci"])
    r_phys = rho * radius
    # Only the cortical band can hold a sulcus: work on its pixels alone (the costly part at 650²).
    zone = np.nonzero(brain & (brain_depth < 1.6 * gm_thickness))
    zone_theta, zone_r = theta[zone], r_phys[zone]
    in_sulcus = np.zeros(zone_theta.shape, dtype=bool)
    for angle, phase in zip(anat.sulcus_angles, anat.sulcus_phases):
        a = angle + 0.08 * np.sin(3.0 * z + phase)
        dtheta = np.remainder(zone_theta - a + np.pi, 2.0 * np.pi) - np.pi
        in_sulcus |= np.abs(dtheta) * zone_r < half_width
    labels[zone[0][in_sulcus], zone[1][in_sulcus]] = CSF

    _deep_structures(labels, x / scale, y / scale, z, anat, slice_index, brain, brain_depth, gm_thickness)
    return labels


def _deep_structures(labels, xs, ys, z, anat, slice_index, brain, brain_depth, gm_thickness):
    """Deep grey nuclei, ventricles and white-matter lesions, in slice-normalised coordinates."""
    m = anat.markers
    deep_profile = 1.0 - ((z - 0.10) / 0.25) ** 2
    if deep_profile > 0:
        f = np.sqrt(deep_profile)
        for side in (-1.0, 1.0):
            labels[brain & _ellipse(xs, ys, side * 0.15, 0.02, 0.06 * f, 0.10 * f)] = DEEP_GM
    vent_profile = 1.0 - ((z - 0.25) / 0.35) ** 2
    half_length = 0.11 * (1.0 + 0.9 * m["ventricles"])
    if vent_profile > 0:
        f = np.sqrt(vent_profile)
        ly, lx = half_length * f, 0.32 * half_length * f
        for side in (-1.0, 1.0):
            labels[brain & _ellipse(xs, ys, side * (lx + 0.012), -0.02, lx, ly)] = CSF
    third_profile = 1.0 - ((z - 0.02) / 0.18) ** 2
    if third_profile > 0:
        w = 0.010 * (1.0 + 1.2 * m["ventricles"]) * np.sqrt(third_profile)
        labels[brain & _ellipse(xs, ys, 0.0, 0.03, w, 0.07)] = CSF
    # Lesions: periventricular white-matter hyperintensities (CT-hypodense), slice-seeded.
    if abs(z - 0.25) < 0.4:
        rng = np.random.default_rng([anat.detail_seed, slice_index])
        for _ in range(rng.poisson(0.2 + 3.0 * m["lesions"] ** 2)):
            ang = rng.uniform(-np.pi, np.pi)
            dist = half_length * 0.6 + rng.uniform(0.03, 0.15)
            cx, cy = dist * np.cos(ang) * 0.8, dist * np.sin(ang)
            r = rng.uniform(0.012, 0.03)
            deep_wm = (labels == WM) & (brain_depth > gm_thickness)
            labels[deep_wm & _ellipse(xs, ys, cx, cy, r, r)] = LESION


# ---------------------------------------------------------------------------------------------
# Contrast: tissue values per modality


def tissue_values(anat: Anatomy, modality: str, mri_contrast: str = "t1") -> np.ndarray:
    m = anat.markers
    v = np.zeros(N_TISSUES, dtype=np.float64)
    if modality == "ct":  # Hounsfield units
        bone = 1450.0 - 550.0 * m["bone"]
        v[[AIR, SKIN, FAT, BONE, DIPLOE, CSF, GM, WM, DEEP_GM, LESION]] = (
            -1000.0, 45.0, -90.0, bone, 0.55 * bone, 6.0, 40.0, 26.0, 37.0, 14.0)
    elif modality == "mri" and mri_contrast == "t1":  # T1-weighted, arbitrary units (hand-set)
        v[[AIR, SKIN, FAT, BONE, DIPLOE, CSF, GM, WM, DEEP_GM, LESION]] = (
            0.0, 0.60, 0.95, 0.04, 0.35 + 0.35 * m["marrow"], 0.12, 0.55, 0.86 - 0.08 * anat.t, 0.65, 0.45)
    elif modality == "mri" and mri_contrast in SEQUENCES:
        v[:] = _relaxation_contrast(anat, SEQUENCES[mri_contrast])
    elif modality == "mri":
        raise ValueError(f"mri_contrast must be one of {MRI_CONTRASTS}, got {mri_contrast!r}")
    elif modality == "pet":  # FDG uptake, arbitrary units
        gm = anat.pet_gm_uptake
        v[[AIR, SKIN, FAT, BONE, DIPLOE, CSF, GM, WM, DEEP_GM, LESION]] = (
            0.0, 0.12, 0.08, 0.05, 0.06, 0.04, gm, 0.33, 1.1 * gm, 0.22)
    else:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    return v


# Proton density (water content relative to pure water), T1 and T2 in ms at 3 T, per tissue; the
# sources are in docs/phantom.md. BONE: cortical bone's T2 is well under 1 ms, so it gives no spin
# echo. DIPLOE mixes FAT with haematopoietic marrow (taken as SKIN, muscle-like soft tissue) in the
# age-dependent proportion the T1 contrast uses (marrow turns fatty with age).
RELAXATION_3T = {
    SKIN: (0.70, 1420.0, 32.0),     # muscle / scalp soft tissue
    FAT: (0.90, 371.0, 133.0),      # subcutaneous fat
    BONE: (0.05, 1000.0, 0.5),
    CSF: (0.97, 4163.0, 1650.0),
    GM: (0.78, 1331.0, 110.0),
    WM: (0.65, 832.0, 79.6),
    DEEP_GM: (0.75, 1200.0, 90.0),  # deep grey nuclei: between cortex and white matter
    LESION: (0.80, 1300.0, 180.0),  # white-matter hyperintensity: prolonged T1 and T2 (gliosis, oedema)
}
WM_T2_AGEING = 0.10    # white-matter T2 lengthens by this fraction from age 20 to 90 (assumed, docs/phantom.md)
BRIGHTEST = 0.95       # each contrast scaled so its brightest tissue matches T1's fat


@dataclass(frozen=True)
class Sequence:
    """A spin-echo sequence (with an inversion pulse for FLAIR); signal() gives a tissue's magnitude."""
    tr: float             # repetition time, ms
    te: float             # echo time, ms
    ti: float = 0.0       # inversion time, ms (0: no inversion pulse)

    def signal(self, pd: float, t1: float, t2: float) -> float:
        if self.ti:   # inversion recovery (FLAIR): longitudinal magnetisation at TI after a 180° pulse
            longitudinal = abs(1.0 - 2.0 * np.exp(-self.ti / t1) + np.exp(-self.tr / t1))
        else:         # spin echo: saturation recovery over TR
            longitudinal = 1.0 - np.exp(-self.tr / t1)
        return pd * longitudinal * np.exp(-self.te / t2)


# Clinical 3 T brain protocols: T2-weighted fast spin echo, and FLAIR with TI near CSF's null point.
SEQUENCES = {"t2": Sequence(tr=4000.0, te=100.0), "flair": Sequence(tr=9000.0, te=120.0, ti=2500.0)}


def _relaxation_contrast(anat: Anatomy, sequence: Sequence) -> np.ndarray:
    """Tissue signals of one MR sequence from RELAXATION_3T, scaled to BRIGHTEST."""
    v = np.zeros(N_TISSUES, dtype=np.float64)
    for tissue, (pd, t1, t2) in RELAXATION_3T.items():
        if tissue == WM:
            t2 *= 1.0 + WM_T2_AGEING * anat.t
        v[tissue] = sequence.signal(pd, t1, t2)
    fat_fraction = 0.35 + 0.35 * anat.markers["marrow"]   # the same marrow marker as T1's diploe
    v[DIPLOE] = fat_fraction * v[FAT] + (1.0 - fat_fraction) * v[SKIN]
    return v * (BRIGHTEST / v.max())


def _supersample(size: int) -> int:
    # Partial volume matters where a pixel is coarse; at CT's 650² one sample per pixel suffices.
    return 2 if size <= 256 else 1


def _pool(img: np.ndarray, k: int) -> np.ndarray:
    if k == 1:
        return img
    n = img.shape[0] // k
    return img.reshape(n, k, n, k).mean(axis=(1, 3))


def render_slice(anat: Anatomy, modality: str, z: float, size: int, slice_index: int,
                 rng: np.random.Generator, mri_contrast: str = "t1") -> np.ndarray:
    """One noiseless-then-noisy slice in the modality's native units, float32 (size, size)."""
    k = _supersample(size)
    labels = label_map(anat, z, size * k, slice_index)
    img = _pool(tissue_values(anat, modality, mri_contrast)[labels], k)
    if modality == "ct":
        img = img + rng.normal(0.0, 4.0, img.shape)
    elif modality == "mri":
        img = _mri_acquisition(img, anat, rng)
    else:
        img = _pet_acquisition(img, size, rng)
    return img.astype(np.float32)


def _mri_acquisition(img, anat, rng):
    coords = np.linspace(-1.0, 1.0, img.shape[0])
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    b = anat.mri_bias
    bias_field = np.exp(b[0] * xx + b[1] * yy + b[2] * xx * yy)
    signal = img * bias_field * anat.mri_gain
    sigma = 0.035 * anat.mri_gain  # ≈ 3.5% of the bright-tissue signal
    # Rician magnitude noise: |signal + complex Gaussian|.
    return np.hypot(signal + rng.normal(0.0, sigma, img.shape), rng.normal(0.0, sigma, img.shape))


def _pet_acquisition(img, size, rng, peak_counts=60.0):
    blurred = gaussian_filter(img, sigma=1.6 * size / 64.0)
    half = size // 2
    binned = blurred[: 2 * half, : 2 * half].reshape(half, 2, half, 2).mean(axis=(1, 3))
    scale = peak_counts / max(float(binned.max()), 1e-6)
    counts = rng.poisson(np.clip(binned, 0, None) * scale) / scale
    up = np.repeat(np.repeat(counts, 2, axis=0), 2, axis=1)
    out = np.zeros((size, size))
    out[: up.shape[0], : up.shape[1]] = up
    return out


def render_patient(anat: Anatomy, modality: str, size: int | None = None, n_slices: int = 30,
                   seed: int = 0, mri_contrast: str = "t1") -> np.ndarray:
    """All axial slices of a patient, (n_slices, size, size) float32 in native units (MRI in
    `mri_contrast`; its noise draws are the same in every contrast)."""
    size = DEFAULT_NATIVE_SIZE[modality] if size is None else int(size)
    if size < 8:
        raise ValueError(f"phantom size must be at least 8 pixels, got {size}")
    rng = np.random.default_rng([anat.detail_seed, seed, MODALITIES.index(modality)])
    return np.stack([render_slice(anat, modality, z, size, i, rng, mri_contrast)
                     for i, z in enumerate(slice_positions(n_slices))])
