"""In-memory labelled slice sets: the phantom cohort or dataset folders, resized and normalised."""
from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DuiitConfigError, DuiitDataError, printable
from ..io import atomic_path
from . import phantoms
from .intensity import Intensity, normalize_volume
from .labels import read_labels
from .readers import file_kind, pil_scale, read_slices


@dataclass
class SliceSet:
    """N labelled slices of one modality at the training size, intensities in [-1, 1]."""
    modality: str
    images: torch.Tensor        # (N, 1, S, S) float32
    ages: torch.Tensor          # (N,) float32, years
    patient_ids: np.ndarray     # (N,) str
    native: list | None = None  # N (H, W) slices in [-1, 1] at native resolution, for the loaders

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def patients(self) -> list[str]:
        return list(OrderedDict.fromkeys(self.patient_ids.tolist()))

    def select_patients(self, patients) -> "SliceSet":
        return self.select_indices(np.nonzero(np.isin(self.patient_ids, list(patients)))[0])

    def select_indices(self, indices) -> "SliceSet":
        idx = np.asarray(indices, dtype=np.int64)
        native = None if self.native is None else [self.native[i] for i in idx]
        t = torch.from_numpy(idx)
        return SliceSet(self.modality, self.images[t], self.ages[t], self.patient_ids[idx], native)

    @staticmethod
    def concat(sets: list["SliceSet"], modality: str | None = None) -> "SliceSet":
        native = None if any(s.native is None for s in sets) else [x for s in sets for x in s.native]
        return SliceSet(modality or sets[0].modality, torch.cat([s.images for s in sets]),
                        torch.cat([s.ages for s in sets]), np.concatenate([s.patient_ids for s in sets]), native)


def resize_slices(volume: np.ndarray, size: int) -> torch.Tensor:
    """(S, H, W) → (S, 1, size, size); antialiased when shrinking so thin structures average."""
    t = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[:, None]
    if t.shape[-2:] == (size, size):
        return t.clone()
    shrinking = t.shape[-1] > size or t.shape[-2] > size
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking)


def build_slice_set(volumes, modality: str, size: int, intensity: Intensity = Intensity()) -> SliceSet:
    """volumes: iterable of (patient_id, age, (S, H, W) native-unit array), one per volume."""
    images, ages, ids, native = [], [], [], []
    for patient_id, age, volume in volumes:
        norm = normalize_volume(volume, modality, intensity)
        images.append(resize_slices(norm, size))
        native += list(norm)
        ages += [float(age)] * len(norm)
        ids += [patient_id] * len(norm)
    if not images:
        raise ValueError(f"no {modality} volumes to build a slice set from")
    return SliceSet(modality, torch.cat(images), torch.tensor(ages, dtype=torch.float32), np.array(ids), native)


@dataclass
class FolderVolumes:
    """What a dataset folder held: one (patient_id, age, (S, H, W) native-unit volume) per patient,
    and the files left out under on_bad_file="skip" as (path, problem)."""
    root: str
    volumes: list
    skipped: list


def read_folder(root, on_bad_file: str = "error", cache_dir=None, modality: str | None = None) -> FolderVolumes:
    """Read a dataset folder (labels.csv + images, volumes or series folders).

    on_bad_file="error" stops at the first bad file with a DuiitDataError naming it; "skip" leaves
    the file (or row) out and records it. Slices of one patient form a volume (for the per-volume
    intensity mapping). DICOM and NIfTI decodes are cached as .npy under cache_dir when given."""
    if on_bad_file not in ("error", "skip"):
        raise ValueError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
    skipped: list = [] if on_bad_file == "skip" else None
    root = Path(root)
    rows = read_labels(root, skipped)
    _check_unlabelled_files(root, rows, skipped)
    by_patient: "OrderedDict[str, list]" = OrderedDict()
    ages: dict[str, float] = {}
    for row in rows:
        try:
            slope, intercept = _row_scale(row)
            with np.errstate(over="ignore"):   # overflow is detected just below, naming the file
                slices = read_cached(row.path, cache_dir, modality) * slope + intercept
            if not np.isfinite(slices).all():   # finite stored values can overflow once rescaled
                raise DuiitDataError(row.path, f"values overflow after rescale_slope {slope:g} / "
                                               f"rescale_intercept {intercept:g}")
            parts = by_patient.get(row.patient_id)
            if parts and slices.shape[1:] != parts[0].shape[1:]:
                raise DuiitDataError(row.path, f"slice size {slices.shape[1:]} differs from the other "
                                               f"slices of patient {row.patient_id}")
            if ages.setdefault(row.patient_id, row.age) != row.age:
                raise DuiitDataError(row.path, f"patient {row.patient_id} is labelled with two ages")
        except DuiitDataError as exc:
            if skipped is None:
                raise
            skipped.append((exc.path, exc.problem))
            continue
        by_patient.setdefault(row.patient_id, []).append(slices)
    if not by_patient:
        raise DuiitDataError(root, "no readable labelled images")
    volumes = [(pid, ages[pid], np.concatenate(parts)) for pid, parts in by_patient.items()]
    return FolderVolumes(str(root), volumes, skipped or [])


def _row_scale(row) -> tuple[float, float]:
    """The scale still to apply to what read_slices returns. A PNG that stores its own scale has it
    applied on reading; labels.csv's columns may repeat it but not contradict it."""
    own = pil_scale(row.path)
    own = None if own is None else own[1]
    if own is None:
        return row.rescale_slope, row.rescale_intercept
    if row.has_rescale and not np.allclose(own, (row.rescale_slope, row.rescale_intercept), rtol=1e-9, atol=1e-9):
        raise DuiitDataError(row.path, f"stores slope {own[0]:g}, intercept {own[1]:g}, but labels.csv gives "
                                       f"{row.rescale_slope:g}, {row.rescale_intercept:g}")
    return 1.0, 0.0


def _check_unlabelled_files(root: Path, rows, skipped) -> None:
    """An image file in the folder that no label row covers is an error (or a skip)."""
    covered = {r.path.resolve() for r in rows}
    covered_dirs = {p for p in covered if p.is_dir()}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.startswith(".") or file_kind(path) is None:
            continue
        resolved = path.resolve()
        if resolved in covered or any(d in resolved.parents for d in covered_dirs):
            continue
        if skipped is None:
            raise DuiitDataError(path, "image file has no label in labels.csv")
        skipped.append((str(path), "image file has no label in labels.csv"))


def read_cached(path: Path, cache_dir=None, modality: str | None = None) -> np.ndarray:
    """read_slices, with DICOM / NIfTI / series decodes kept as .npy under cache_dir, keyed by
    path, size and modification time (a changed file is decoded again)."""
    path = Path(path)
    if cache_dir is None or not (path.is_dir() or file_kind(path) in ("dicom", "nifti")):
        return read_slices(path, modality)
    members = sorted(path.iterdir()) if path.is_dir() else [path]
    stamp = [(str(path.resolve()))] + [(m.name, m.stat().st_size, m.stat().st_mtime_ns) for m in members]
    key = hashlib.sha1(repr(stamp).encode()).hexdigest()
    return npy_cached(Path(cache_dir) / f"{key}.npy", lambda: read_slices(path, modality))


def npy_cached(cached: Path, make) -> np.ndarray:
    """The array stored at `cached`, else make()'s, written there atomically. A damaged entry is
    made again and rewritten."""
    if cached.is_file():
        try:
            return np.load(cached, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            pass
    array = make()
    with atomic_path(cached) as tmp:
        np.save(tmp, array)
    return array


def load_folder(root, modality: str, size: int, intensity: Intensity = Intensity(),
                on_bad_file: str = "error", cache_dir=None, log=None) -> SliceSet:
    """A dataset folder as a SliceSet at the training size (see read_folder)."""
    folder = read_folder(root, on_bad_file, cache_dir, modality)
    for path, problem in folder.skipped:
        if log is not None:
            log(printable(f"skipped {path}: {problem}"))
    if folder.skipped and log is not None:
        log(f"{root}: skipped {len(folder.skipped)} bad file(s)")
    return build_slice_set(folder.volumes, modality, size, intensity)


def split_patients(patients, val_fraction: float, test_fraction: float, seed: int):
    """Patient-level split: no patient appears in two of (train, val, test)."""
    patients = sorted(set(patients))
    if len(patients) < 3:
        raise DuiitDataError("CT dataset", f"needs at least 3 patients for train/val/test, has {len(patients)}")
    order = np.random.default_rng(seed).permutation(len(patients))
    n_val = max(1, round(val_fraction * len(patients)))
    n_test = max(1, round(test_fraction * len(patients)))
    _check_split_leaves_training(n_val, n_test, len(patients), "patients")
    shuffled = [patients[i] for i in order]
    return shuffled[n_val + n_test:], shuffled[:n_val], shuffled[n_val:n_val + n_test]


def _check_split_leaves_training(n_val: int, n_test: int, n: int, what: str) -> None:
    """Every split has a training part: without one the batch sampler would have nothing to draw."""
    if n_val + n_test >= n:
        raise DuiitConfigError(f"config val_fraction/test_fraction: {n_val} validation + {n_test} test of the "
                               f"{n} CT {what} leave none for training; lower the fractions or add patients")


def split_images(n: int, val_fraction: float, test_fraction: float, seed: int):
    """Slice-level split (the paper's protocol): indices of train, val, test. Leaky: slices of one
    patient can fall on both sides."""
    if n < 3:
        raise DuiitDataError("CT dataset", f"needs at least 3 slices for train/val/test, has {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = max(1, round(val_fraction * n)), max(1, round(test_fraction * n))
    _check_split_leaves_training(n_val, n_test, n, "slices")
    return order[n_val + n_test:], order[:n_val], order[n_val:n_val + n_test]


# ---------------------------------------------------------------------------------------------
# The phantom cohort


def phantom_volumes(cohort, modality: str, size: int, n_slices: int, seed: int, cache_dir=None,
                    mri_contrast: str = "t1"):
    """(patient_id, age, volume) per patient of the cohort, rendered; with cache_dir, each volume is
    kept there as .npy and read back on the next call (a run's jobs render the same cohort once)."""
    for anat in cohort:
        if cache_dir is None:
            volume = phantoms.render_patient(anat, modality, size, n_slices, seed, mri_contrast)
        else:
            volume = _cached_render(anat, modality, size, n_slices, seed, Path(cache_dir), mri_contrast)
        yield anat.patient_id, anat.age, volume


@functools.lru_cache(maxsize=1)
def _renderer_fingerprint() -> str:
    # The renderer's own source is part of the key: an edited phantom never reads old volumes.
    return hashlib.sha1(Path(phantoms.__file__).read_bytes()).hexdigest()


def _cached_render(anat, modality: str, size: int, n_slices: int, seed: int, cache_dir: Path,
                   mri_contrast: str = "t1") -> np.ndarray:
    look = (mri_contrast,) if modality == "mri" else ()   # the contrast is part of an MRI volume's key
    key = hashlib.sha1(repr((_renderer_fingerprint(), anat, modality, size, n_slices, seed, *look)).encode()).hexdigest()
    return npy_cached(cache_dir / f"phantom-{key}.npy",
                      lambda: phantoms.render_patient(anat, modality, size, n_slices, seed, mri_contrast))


def phantom_cohorts(pc) -> dict:
    """Patients of the phantom config: CT train/val/test and one cohort per source modality."""
    n_ct = pc.ct_train_patients + pc.ct_val_patients + pc.ct_test_patients
    ct = phantoms.make_cohort(n_ct, pc.seed, "ct")
    return {
        "ct_train": ct[:pc.ct_train_patients],
        "ct_val": ct[pc.ct_train_patients:pc.ct_train_patients + pc.ct_val_patients],
        "ct_test": ct[pc.ct_train_patients + pc.ct_val_patients:],
        "mri": phantoms.make_cohort(pc.source_patients, pc.seed, "mri"),
        "pet": phantoms.make_cohort(pc.source_patients, pc.seed, "pet"),
    }


def native_size(pc, modality: str) -> int:
    return {"ct": pc.ct_size, "mri": pc.mri_size, "pet": pc.pet_size}[modality]
