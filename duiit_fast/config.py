"""Training configuration. Defaults are the paper's (appendix A.1) and CycleGAN's."""
from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .arms import SETTINGS, measured_bn_stats, setting_kind, setting_sources
from .errors import DuiitConfigError
from .paths import check_apart
from .validation import (Range, check, check_ranges, check_types,
                         reject_unknown, short, without_removed_knobs)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Names the configuration accepts. The modules that implement them import these (models/, ops/):
# reading a configuration imports no network and registers no op.
GENERATORS = ("resnet", "unet")                      # models.build_generator
MRI_CONTRASTS = ("t1", "t2", "flair")                # data/phantoms.py: the phantom MRI's contrast
PREDICTORS = ("resnet50", "resnet18", "small")       # models.build_predictor
BACKENDS = ("reference", "triton", "cpp", "auto")    # ops: the fused-op backends
SOURCE_MODALITIES = ("mri", "pet")
# The paper's image-level CT split: 1887 / 271 / 280 of 2438 slices (train / val / test).
PAPER_IMAGE_SPLIT = (1887 / 2438, 271 / 2438, 280 / 2438)
PRED_FEEDBACK = ("joint", "ct_reader")
PREDICTOR_BN_STATS = ("real_ct", "training_mix", "running", "by_setting")
SWITCHES = ("auto", "on", "off")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class PhantomConfig:
    """The embedded phantom cohort used when no dataset folders are given."""
    ct_train_patients: int = 12    # CT patients the predictor trains on (the scarce modality)
    ct_val_patients: int = 8       # CT patients that choose the epoch (and nothing else)
    ct_test_patients: int = 40     # CT patients every reported MSE is measured on
    source_patients: int = 50      # patients per source modality (MRI, PET), distinct people from the CT patients
    slices_per_patient: int = 30   # axial slices rendered per patient
    ct_size: int = 650             # native CT side in pixels (the loader resizes every modality to image_size)
    mri_size: int = 256            # native MRI side in pixels
    pet_size: int = 128            # native PET side in pixels
    seed: int = 0                  # the cohort: which patients, their ages and anatomy, and the noise
    mri_contrast: str = "t1"       # t1 (every recorded experiment's), t2 or flair: how the MRI patients look
                                   # (data/phantoms.py; tissue values from 3 T relaxation times, docs/phantom.md)


@dataclass
class FastConfig:
    """How a run executes (train/fast.py); none of it changes what is learned beyond rounding. "auto"
    resolves per device: CUDA compiled bf16 channels_last; CPU eager, bf16 where the CPU has it natively."""
    compile: str = "auto"            # auto | on | off: torch.compile the step's forward + losses
    compile_regions: str = "auto"    # auto | on | off: compiled, each residual block compiled once (auto: on CPU)
    precision: str = "auto"          # auto | fp32 | bf16: autocast; losses, weights, Adam stay fp32
    channels_last: str = "auto"      # auto | on | off: NHWC nets and batches (auto: CUDA, compiled CPU block regions)
    fused_optimizer: bool = True     # Adam(fused=True): one kernel for every parameter's update


@dataclass
class AugmentConfig:
    """Random augmentations of every training batch (train/augment.py), drawn from the run's seed."""
    flip: bool = True                # left-right flips
    shift: int = 0                   # translations of up to this many pixels (air-padded)
    crop_min: float = 1.0            # square crops of U[crop_min, 1] of the side, resized back


# The tables of TrainConfig, each a [name] table in TOML and `name.KEY` for --set.
TABLES = {"phantom": PhantomConfig, "fast": FastConfig, "augment": AugmentConfig}
# Fields that moved into a table; configuration files and checkpoints written before use the flat
# names, which still read as the table's field.
MOVED_INTO_TABLES = {"compile": "fast.compile", "compile_regions": "fast.compile_regions",
                     "precision": "fast.precision", "channels_last": "fast.channels_last",
                     "fused_optimizer": "fast.fused_optimizer", "augment_flip": "augment.flip",
                     "augment_shift": "augment.shift", "augment_crop_min": "augment.crop_min"}


def nest_moved_fields(data: dict) -> dict:
    """A configuration dict with the flat names of moved fields put into their tables (a flat name
    wins over the table: `--set compile=on` on a stored configuration)."""
    data = dict(data)
    for old, new in MOVED_INTO_TABLES.items():
        table, name = new.split(".")
        if old in data and isinstance(data.get(table, {}), dict):
            data[table] = {**data.get(table, {}), name: data.pop(old)}
    return data


def leaf_fields(data: dict) -> dict:
    """A configuration dict (of any version: moved fields nested, removed knobs at their off value
    dropped) as `field` / `table.field` → value: how stored configurations are compared."""
    out = {}
    for key, value in nest_moved_fields(without_removed_knobs(data)).items():
        if key in TABLES and isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


@dataclass
class TrainConfig:
    # Paper, appendix A.1
    lr_translator: float = 2e-4      # Adam learning rate of the translators G, F and the critics
    lr_predictor: float = 1e-3       # Adam learning rate of the predictor P (its own Adam on the joint gradient)
    lambda_cyc: float = 10.0         # weight of the L1 cycle terms in L_trans (eq. 1)
    lambda_pred: float = 1e-3        # λ of eq. 3 on L_pred summed over the batch in years² (eq. 2 as written)
    batch_size: int = 16             # pairs per step: real CT plus as many slices of each source
    epochs: int = 200                # epochs of the run (predictor steps are every arm's)
    decay_start_epoch: Optional[int] = None  # learning rates decay linearly to 0 from this epoch to the
                                     # last; unset: half of epochs (the paper's 100 of 200)
    beta1: float = 0.5               # Adam's β1 for every optimiser (CycleGAN's 0.5; β2 is 0.999)
    pool_size: int = 50              # image pool of the critics (CycleGAN): half of each batch swapped with the pool
    # What to train, on what
    setting: str = "MIX-CT-MRI"      # PURE-CT, MIX-CT-{MRI,PET,MRI-PET} (DUIIT), NAIVE-, ORACLE-, CYCLEGAN-,
                                     # TL-, MTL-, DANN-CT-{MRI,PET}, AUG-{SIMPLE,AUTO,ERASING} (README)
    image_size: int = 256            # training side in pixels (a multiple of 4): every modality is resized to it
    seed: int = 0                    # initial weights, batch order, augmentation and image pools
    ct: Optional[str] = None         # CT dataset folder (labels.csv + images); none → the embedded phantom
    mri: Optional[str] = None        # MRI dataset folder (source), for settings that use MRI
    pet: Optional[str] = None        # PET dataset folder (source), for settings that use PET
    phantom: PhantomConfig = field(default_factory=PhantomConfig)  # the [phantom] table (below)
    # Models: CycleGAN's generator uses 9 residual blocks at 256² and 6 below
    ngf: int = 64                    # generator width (channels of its first layer)
    ndf: int = 64                    # critic width (the 70×70 PatchGAN's first layer)
    n_blocks: Optional[int] = None   # residual blocks of the ResNet generator; unset: 9 at 256² and above, else 6
    generator: str = "resnet"        # resnet: CycleGAN's ResNet generator (the paper); unet: pix2pix's U-Net
                                     # (CycleGAN's unet_* option), a skip at every level (n_blocks unused)
    predictor: str = "resnet50"      # resnet50 (the paper), resnet18, or small (the phantom experiment's 0.29 M)
    # Loop details
    predictor_batch_size: int = 64   # real-CT slices per step of predictor-only settings (PURE-CT, AUG-*)
    steps_per_epoch: Optional[int] = None  # default: one pass over the largest training set
    val_fraction: float = 0.1        # CT patients held out for validation when training from folders
    test_fraction: float = 0.2       # CT patients held out for the test
    split_seed: int = 0              # which patients go where; `duiit train --splits 10` runs seeds 0..9
    split: str = "patient"           # "patient", or "image": the paper's slice-level split in its
                                     # proportions 1887/271/280 of 2438 (leaky)
    on_bad_file: str = "error"       # "skip": leave unreadable / unlabelled files out, and list them
    cache_dir: Optional[str] = None  # decoded DICOM / NIfTI volumes (and rendered phantom ones) kept here as .npy
    ct_window: tuple = (40.0, 80.0)  # level, width in HU → [-1, 1]: the clinical brain window
    mri_percentiles: tuple = (1.0, 99.0)  # per-volume MRI percentiles mapped to -1 and 1
    pet_percentile: float = 100.0    # per-volume PET percentile mapped to 1 (100: the maximum)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # the [augment] table (below)
    loader: str = "memory"           # memory: slices resized once at load; torch / dali / auto:
                                     # native slices resized per batch (data/loaders.py)
    # DUIIT beyond the paper's recipe (each off, or the paper's behaviour, by default)
    translator_warmup_steps: int = 0  # translator-only steps (λ = 0) before the predictor sees
                                      # translations; CYCLEGAN's stage 1 is this plus the joint budget
    translator_init: Optional[str] = None  # checkpoint whose translators/critics (after warm-up) start
                                      # this run: lets the arms of one experiment share a warm-up
    lambda_identity: float = 0.0     # CycleGAN's identity term (Zhu et al. 2017, §5.2; its code's
                                      # --lambda_identity, 0.5 there): λcyc·λidt·(|G(x) − x| + |F(y) − y|),
                                      # each translator leaves an image already in its output domain as
                                      # it is, which pushes G to change contrast, not anatomy
    pred_feedback: str = "joint"     # joint: G's discriminative gradient from the co-trained P
                                      # (the paper); ct_reader: from a reader trained on real CT only
    predictor_source_weight: float = 1.0  # DUIIT (the joint step): P's loss weighs each source-derived slice
                                     # by this, real CT by 1 (eq. 2: 1). G's gradient from λ·L_pred stays
                                     # eq. 2's, so P's reading leans on real CT while G still learns to
                                     # carry the cues; the references' P (NAIVE, ORACLE, CycleGAN) is unaffected
    naive_source_weight: float = 1.0  # NAIVE: P's loss weighs each raw source slice by this, real CT by 1 — the
                                     # knob DUIIT's P has in predictor_source_weight, offered to raw mixing
    select_on_val: bool = True       # keep the predictor of the epoch with the best validation MSE
    predictor_bn_stats: str = "real_ct"  # real_ct: before every evaluation P's BatchNorm statistics are
                                      # re-estimated on the real training CT (AdaBN); training_mix: on
                                      # chunks that mix real CT 1:1 with every group P's batches hold (raw,
                                      # rendered or translated sources), as its training batches were
                                      # normalised; running: the momentum averages over the training batches;
                                      # by_setting: the setting's choice on validation (arms.BN_STATS_BY_SETTING)
    label_cues: bool = False         # train a CT reader first and log its MSE and slope on G(source) every
                                     # epoch (on in `duiit experiment`; costs reader_steps before the epochs)
    reader_steps: int = 600          # training steps of the CT reader(s) (label cues, ct_reader)
    reader_path: Optional[str] = None  # a saved CT reader to use instead of training one
    fid_weights: Optional[str] = None  # Inception v3 weights file (TF-Inception or torchvision): IS/FID of G(source) vs CT
    # Where and how it runs
    device: str = "auto"             # auto (CUDA when present), cpu or cuda[:N]
    backend: str = "auto"            # fused-op backend: auto (triton on CUDA, cpp on CPU), reference, cpp, triton
    fast: FastConfig = field(default_factory=FastConfig)  # the [fast] table (below)
    out_dir: str = "runs/duiit"      # the run folder: checkpoint.pt, metrics, logs (apart from the data folders)
    num_threads: Optional[int] = None  # torch threads of this process; unset: torch's default
    log_every: int = 50              # a loss line in the run folder's train.log every this many steps (0: none)
    pictures: bool = True            # translations.png, loss_curves.png, val_scatter.png and index.html in the
                                     # run folder, every epoch (off in `duiit experiment`, which draws its own)

    def __post_init__(self):
        # A table may be given as a dict in Python, as it is in TOML: TrainConfig(phantom=dict(seed=3)).
        for name, table_cls in TABLES.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                reject_unknown(table_cls, value, f"{name}.")
                setattr(self, name, table_cls(**value))

    @property
    def sources(self) -> tuple[str, ...]:
        """Source modalities of the setting, e.g. ("mri", "pet") for MIX-CT-MRI-PET."""
        return setting_sources(self.setting)

    @property
    def kind(self) -> str:
        """PURE, MIX (joint DUIIT), ORACLE (sources rendered as CT, phantom only), NAIVE (raw
        sources as CT), CYCLEGAN (two-stage translation) or AUG (CT with augmentations)."""
        return setting_kind(self.setting)

    @property
    def bn_stats(self) -> str:
        """predictor_bn_stats with by_setting resolved."""
        if self.predictor_bn_stats != "by_setting":
            return self.predictor_bn_stats
        return measured_bn_stats(self.setting)

    @property
    def intensity(self):
        from .data.intensity import Intensity
        return Intensity(tuple(self.ct_window), tuple(self.mri_percentiles), self.pet_percentile)

    @property
    def decay_epoch(self) -> int:
        """decay_start_epoch, or half of epochs where unset."""
        return self.epochs // 2 if self.decay_start_epoch is None else self.decay_start_epoch

    def check_schedule(self) -> "TrainConfig":
        """The schedule holds together: checked by what trains, not by what only reads data."""
        check(self.decay_epoch <= self.epochs, "decay_start_epoch",
              f"must lie in [0, epochs={self.epochs}], got {self.decay_start_epoch}")
        return self

    @property
    def resolved_n_blocks(self) -> int:
        return self.n_blocks if self.n_blocks is not None else (9 if self.image_size >= 256 else 6)

    def validate(self, check_paths: bool = True) -> "TrainConfig":
        """Types first (one line naming the field), then ranges. check_paths=False skips the
        existence of data folders and helper files: a saved model is used without its training data."""
        check_types(self, "")
        for table in TABLES:
            check_types(getattr(self, table), f"{table}.")
        check(self.setting in SETTINGS, "setting", f"must be one of {', '.join(SETTINGS)}, got {short(self.setting)}")
        check(self.backend in BACKENDS, "backend", f"must be one of {BACKENDS}, got {short(self.backend)}")
        check(self.generator in GENERATORS, "generator", f"must be one of {GENERATORS}, got {short(self.generator)}")
        check(self.phantom.mri_contrast in MRI_CONTRASTS, "phantom.mri_contrast",
              f"must be one of {MRI_CONTRASTS}, got {short(self.phantom.mri_contrast)}")
        check(self.predictor in PREDICTORS, "predictor", f"must be one of {PREDICTORS}, got {short(self.predictor)}")
        check(bool(re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device)), "device",
               f"must be auto, cpu or cuda[:N], got {short(self.device)}")
        check_ranges(self, RANGES)
        check(self.image_size % 4 == 0, "image_size",
               f"must be a multiple of 4 (the PatchGAN needs it), got {self.image_size}")
        check(self.augment.shift < self.image_size // 4, "augment.shift",
               f"must lie in [0, image_size/4), got {self.augment.shift}")
        for name in ("compile", "compile_regions", "channels_last"):
            value = getattr(self.fast, name)
            check(value in SWITCHES, f"fast.{name}", f"must be one of {SWITCHES}, got {short(value)}")
        check(self.fast.precision in PRECISIONS, "fast.precision",
              f"must be one of {PRECISIONS}, got {short(self.fast.precision)}")
        check(self.predictor_bn_stats in PREDICTOR_BN_STATS, "predictor_bn_stats",
               f"must be one of {PREDICTOR_BN_STATS}, got {short(self.predictor_bn_stats)}")
        check(self.val_fraction + self.test_fraction < 1, "val_fraction/test_fraction",
               "must sum to less than 1 (the rest are the training patients)")
        level, width = self.ct_window
        check(CT_WINDOW_LEVEL.holds(level) and CT_WINDOW_WIDTH.holds(width), "ct_window",
               f"must be (level in {CT_WINDOW_LEVEL}, width in {CT_WINDOW_WIDTH}) HU, got {short(tuple(self.ct_window))}")
        lo, hi = (tuple(self.mri_percentiles) + (None, None))[:2]
        check(len(self.mri_percentiles) == 2 and 0 <= lo < hi <= 100, "mri_percentiles",
               f"must be (low, high) with 0 <= low < high <= 100, got {short(self.mri_percentiles)}")
        check(self.loader in ("memory", "torch", "dali", "auto"), "loader",
               f"must be memory, torch, dali or auto, got {short(self.loader)}")
        check(self.pred_feedback in PRED_FEEDBACK, "pred_feedback",
               f"must be one of {PRED_FEEDBACK}, got {short(self.pred_feedback)}")
        if check_paths:
            check(self.translator_init is None or Path(self.translator_init).is_file(), "translator_init",
                   f"checkpoint {self.translator_init} does not exist")
            check(self.reader_path is None or Path(self.reader_path).is_file(), "reader_path",
                   f"reader {self.reader_path} does not exist")
            check(self.fid_weights is None or Path(self.fid_weights).is_file(), "fid_weights",
                   f"Inception weights {self.fid_weights} do not exist (a local file: no download at run time)")
        if check_paths:
            for name in ("out_dir", "cache_dir"):   # outputs never land in (or swallow) a data folder
                if getattr(self, name) is not None:
                    check_apart(getattr(self, name), [getattr(self, m) for m in ("ct", "mri", "pet")], name)
        check(self.split in ("patient", "image"), "split", f"must be 'patient' or 'image', got {short(self.split)}")
        check(self.on_bad_file in ("error", "skip"), "on_bad_file",
               f"must be 'error' or 'skip', got {short(self.on_bad_file)}")
        for name in ("ct", "mri", "pet"):
            folder = getattr(self, name)
            check(folder is None or not check_paths or Path(folder).is_dir(), name,
                   f"data folder {folder} does not exist")
        if self.ct is None:
            check(all(getattr(self, m) is None for m in SOURCE_MODALITIES), "ct",
                   "source folders were given without a CT folder")
            p = self.phantom
            for name in ("ct_train_patients", "ct_val_patients", "ct_test_patients",
                         "slices_per_patient", "source_patients"):
                check(getattr(p, name) >= 1, f"phantom.{name}", f"must be at least 1, got {getattr(p, name)}")
        else:
            for m in self.sources:
                check(getattr(self, m) is not None, m, f"setting {self.setting} needs a {m} data folder")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        data = nest_moved_fields(without_removed_knobs(dict(data)))
        tables = {}
        for name, table_cls in TABLES.items():
            table = data.pop(name, {}) or {}
            if not isinstance(table, dict):
                raise DuiitConfigError(f"config {name}: must be a table of {name} fields, got {short(table)}")
            reject_unknown(table_cls, table, f"{name}.")
            tables[name] = table_cls(**table)
        reject_unknown(cls, data, "")
        for key in ("ct_window", "mri_percentiles"):
            if isinstance(data.get(key), list):
                data[key] = tuple(data[key])
        try:
            return cls(**data, **tables)
        except TypeError as exc:
            raise DuiitConfigError(f"bad configuration: {exc}") from None

    def with_settings(self, settings) -> "TrainConfig":
        """This configuration with KEY=VALUE strings applied (`duiit experiment --set`): VALUE is read
        as a TOML value (1e-3, 800, true, "text"; a bare word is a string), `phantom.KEY` reaches
        the phantom's fields; unknown keys and wrong types are one-line errors."""
        data = self.to_dict()
        for text in settings:
            key, sep, raw = text.partition("=")
            key, raw = key.strip(), raw.strip()
            if not sep or not key or not raw:
                raise DuiitConfigError(f"--set {short(text)}: expected KEY=VALUE, e.g. lambda_pred=4e-3")
            try:
                value = tomllib.loads(f"v = {raw}")["v"]
            except tomllib.TOMLDecodeError:
                value = raw
            table, _, name = key.rpartition(".")
            if table not in ("",) + tuple(TABLES):
                raise DuiitConfigError(f"--set {short(text)}: unknown table {short(table)} "
                                       f"(tables: {', '.join(TABLES)})")
            (data[table] if table else data)[name] = value
        return TrainConfig.from_dict(data).validate(check_paths=False).check_schedule()

    @classmethod
    def from_toml(cls, path) -> "TrainConfig":
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise DuiitConfigError(f"{path}: config file not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise DuiitConfigError(f"{path}: not valid TOML ({exc})") from None
        # Relative data folders (and the output folder) are relative to the config file, not to
        # the working directory.
        for key in ("ct", "mri", "pet", "cache_dir", "translator_init", "reader_path", "fid_weights", "out_dir"):
            if isinstance(data.get(key), str):
                data[key] = str((path.parent / data[key]).resolve())
        return cls.from_dict(data).validate()


SEED_RANGE = Range(0, 2 ** 31 - 1)   # numpy's and torch's generators both take these
MANY = 10 ** 7                      # steps: far beyond any run of this tool
# One table for every numeric field: validate() checks them all; relations between fields
# (decay_start_epoch ≤ epochs, …) are checked beside it.
RANGES = {
    "lr_translator": Range(0, 1), "lr_predictor": Range(0, 1),
    "lambda_cyc": Range(0, 1e4), "lambda_pred": Range(0, 1e4), "lambda_identity": Range(0, 1e4),
    "batch_size": Range(1, 4096), "predictor_batch_size": Range(1, 65536),
    "epochs": Range(1, 100_000), "decay_start_epoch": Range(0, 100_000),
    "beta1": Range(0, 1, hi_open=True),
    "pool_size": Range(0, 10_000), "image_size": Range(32, 2048), "seed": SEED_RANGE, "split_seed": SEED_RANGE,
    "ngf": Range(1, 512), "ndf": Range(1, 512), "n_blocks": Range(0, 64),
    "steps_per_epoch": Range(1, MANY), "val_fraction": Range(0, 1, True, True), "test_fraction": Range(0, 1, True, True),
    "pet_percentile": Range(0, 100, lo_open=True), "augment.crop_min": Range(0.1, 1), "augment.shift": Range(0, 512),
    "translator_warmup_steps": Range(0, MANY), "reader_steps": Range(0, MANY), "log_every": Range(0, MANY),
    "predictor_source_weight": Range(0, 100, lo_open=True), "num_threads": Range(1, 1024),
    "naive_source_weight": Range(0, 100, lo_open=True),
    "phantom.ct_train_patients": Range(0, 100_000), "phantom.ct_val_patients": Range(0, 100_000),
    "phantom.ct_test_patients": Range(0, 100_000), "phantom.source_patients": Range(0, 100_000),
    "phantom.slices_per_patient": Range(1, 1024), "phantom.ct_size": Range(8, 4096),
    "phantom.mri_size": Range(8, 4096), "phantom.pet_size": Range(8, 4096), "phantom.seed": SEED_RANGE,
}
CT_WINDOW_LEVEL, CT_WINDOW_WIDTH = Range(-2000, 4000), Range(1, 10_000)   # HU
