"""Assemble a run's data from its config: CT train/val/test by patient plus source sets."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config import PAPER_IMAGE_SPLIT
from .methods import method_of
from ..data.datasets import (SliceSet, build_slice_set, load_folder, native_size, phantom_cohorts,
                             phantom_volumes, split_images, split_patients)


@dataclass
class TrainingData:
    ct_train: SliceSet
    ct_val: SliceSet
    ct_test: SliceSet
    sources: dict = field(default_factory=dict)   # modality → SliceSet (labelled, other patients)
    # Phantom only: the source patients rendered directly as CT, slice for slice (ORACLE's extra
    # data, and the ground truth that translations are compared with).
    sources_as_ct: dict = field(default_factory=dict)

    def split(self, name: str) -> SliceSet:
        try:
            return {"train": self.ct_train, "val": self.ct_val, "test": self.ct_test}[name]
        except KeyError:
            raise ValueError(f"split must be train, val or test, got {name!r}") from None


def load_training_data(cfg, progress=None, log=print) -> TrainingData:
    if cfg.ct is None:
        return _phantom_data(cfg, progress)

    def load(modality):
        return load_folder(getattr(cfg, modality), modality, cfg.image_size, cfg.intensity,
                           cfg.on_bad_file, cfg.cache_dir, log)
    ct = load("ct")
    sources = {m: load(m) for m in cfg.sources}
    if cfg.split == "image":
        # The paper's protocol: slices drawn at random, so one patient's slices can sit in train
        # and test. Reports label it leaky.
        _, val_share, test_share = PAPER_IMAGE_SPLIT
        train, val, test = split_images(len(ct), val_share, test_share, cfg.split_seed)
        return TrainingData(ct.select_indices(train), ct.select_indices(val), ct.select_indices(test), sources)
    train_p, val_p, test_p = split_patients(ct.patients, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    return TrainingData(ct.select_patients(train_p), ct.select_patients(val_p),
                        ct.select_patients(test_p), sources)


def _phantom_data(cfg, progress=None) -> TrainingData:
    pc = cfg.phantom
    cohorts = phantom_cohorts(pc)

    def render(cohort, modality, as_modality=None, role=""):
        as_modality = as_modality or modality
        vols = phantom_volumes(cohort, as_modality, native_size(pc, as_modality), pc.slices_per_patient, pc.seed,
                               cfg.cache_dir, pc.mri_contrast)
        if progress is not None:
            label = f"phantom {modality.upper()}{' ' + role if role else ''}"
            vols = progress(vols, total=len(cohort), desc=label + (f" as {as_modality.upper()}"
                                                                   if as_modality != modality else ""))
        return build_slice_set(vols, as_modality, cfg.image_size, cfg.intensity)

    ct_train = render(cohorts["ct_train"], "ct", role="train")
    method = method_of(cfg.kind)
    sources = {m: render(cohorts[m], m) for m in method.loaded_sources(cfg)}
    # The source patients rendered directly as CT: what a perfect translator would produce.
    as_ct = {m: render(cohorts[m], m, "ct") for m in method.sources_rendered_as_ct(cfg)}
    return TrainingData(ct_train, render(cohorts["ct_val"], "ct", role="validation"),
                        render(cohorts["ct_test"], "ct", role="test"), sources, as_ct)
