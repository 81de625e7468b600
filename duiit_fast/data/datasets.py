"""In-memory labelled slice sets: the phantom cohort or dataset folders, resized and normalised."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DuiitDataError
from . import phantoms
from .intensity import normalize_volume
from .labels import read_labels
from .readers import read_slices


@dataclass
class SliceSet:
    """N labelled slices of one modality at the training size, intensities in [-1, 1]."""
    modality: str
    images: torch.Tensor        # (N, 1, S, S) float32
    ages: torch.Tensor          # (N,) float32, years
    patient_ids: np.ndarray     # (N,) str

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def patients(self) -> list[str]:
        return list(OrderedDict.fromkeys(self.patient_ids.tolist()))

    def select_patients(self, patients) -> "SliceSet":
        mask = np.isin(self.patient_ids, list(patients))
        idx = torch.from_numpy(np.nonzero(mask)[0])
        return SliceSet(self.modality, self.images[idx], self.ages[idx], self.patient_ids[mask])

    @staticmethod
    def concat(sets: list["SliceSet"], modality: str | None = None) -> "SliceSet":
        return SliceSet(modality or sets[0].modality, torch.cat([s.images for s in sets]),
                        torch.cat([s.ages for s in sets]), np.concatenate([s.patient_ids for s in sets]))


def resize_slices(volume: np.ndarray, size: int) -> torch.Tensor:
    """(S, H, W) → (S, 1, size, size); antialiased when shrinking so thin structures average."""
    t = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[:, None]
    if t.shape[-2:] == (size, size):
        return t.clone()
    shrinking = t.shape[-1] > size or t.shape[-2] > size
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking)


def build_slice_set(volumes, modality: str, size: int, ct_window=(40.0, 80.0),
                    mri_percentiles=(1.0, 99.0)) -> SliceSet:
    """volumes: iterable of (patient_id, age, (S, H, W) native-unit array), one per volume."""
    images, ages, ids = [], [], []
    for patient_id, age, volume in volumes:
        norm = normalize_volume(volume, modality, ct_window, mri_percentiles)
        images.append(resize_slices(norm, size))
        ages += [float(age)] * len(norm)
        ids += [patient_id] * len(norm)
    if not images:
        raise ValueError(f"no {modality} volumes to build a slice set from")
    return SliceSet(modality, torch.cat(images), torch.tensor(ages, dtype=torch.float32), np.array(ids))


def load_folder(root, modality: str, size: int, ct_window=(40.0, 80.0),
                mri_percentiles=(1.0, 99.0)) -> SliceSet:
    """A dataset folder (labels.csv + images) as a SliceSet; slices of one patient form a volume
    for the per-volume intensity mapping (MRI percentiles, PET maximum)."""
    rows = read_labels(root)
    by_patient: "OrderedDict[str, list]" = OrderedDict()
    ages: dict[str, float] = {}
    for row in rows:
        slices = read_slices(row.path) * row.rescale_slope + row.rescale_intercept
        if by_patient.get(row.patient_id) and slices.shape[1:] != by_patient[row.patient_id][0].shape[1:]:
            raise DuiitDataError(row.path, f"slice size {slices.shape[1:]} differs from the other "
                                           f"slices of patient {row.patient_id}")
        if ages.setdefault(row.patient_id, row.age) != row.age:
            raise DuiitDataError(row.path, f"patient {row.patient_id} is labelled with two ages")
        by_patient.setdefault(row.patient_id, []).append(slices)
    volumes = ((pid, ages[pid], np.concatenate(parts)) for pid, parts in by_patient.items())
    return build_slice_set(volumes, modality, size, ct_window, mri_percentiles)


def split_patients(patients, val_fraction: float, test_fraction: float, seed: int):
    """Patient-level split: no patient appears in two of (train, val, test)."""
    patients = sorted(set(patients))
    if len(patients) < 3:
        raise DuiitDataError("CT dataset", f"needs at least 3 patients for train/val/test, has {len(patients)}")
    order = np.random.default_rng(seed).permutation(len(patients))
    n_val = max(1, round(val_fraction * len(patients)))
    n_test = max(1, round(test_fraction * len(patients)))
    shuffled = [patients[i] for i in order]
    return shuffled[n_val + n_test:], shuffled[:n_val], shuffled[n_val:n_val + n_test]


# ---------------------------------------------------------------------------------------------
# The phantom cohort


def phantom_volumes(cohort, modality: str, size: int, n_slices: int, seed: int):
    for anat in cohort:
        yield anat.patient_id, anat.age, phantoms.render_patient(anat, modality, size, n_slices, seed)


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
