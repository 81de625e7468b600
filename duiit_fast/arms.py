"""The settings an experiment compares: the grammar of their names, the experiment's arm lists, and
the per-setting choices measured on the experiment. A leaf: the configuration reads its names here,
the experiment its arms; nothing here imports a network or registers an op.

A setting is KIND-CT[-SOURCES]. PURE: the predictor on CT alone. MIX: DUIIT, translators and
predictor trained jointly. ORACLE: source patients rendered directly as CT (phantom only: a perfect
translator). NAIVE: raw source slices mixed in as if they were CT. CYCLEGAN: two-stage, translators
trained without the predictor (λ = 0), then frozen. TL / MTL / DANN: the paper's transfer,
multi-task and domain-adversarial baselines, one source. AUG: CT only with torchvision's
augmentations. What each kind trains is its method (train/methods/)."""
from __future__ import annotations

TRANSLATION_KINDS = ("MIX", "ORACLE", "NAIVE", "CYCLEGAN")
SOURCE_COMBINATIONS = ("MRI", "PET", "MRI-PET")
BASELINE_KINDS = ("TL", "MTL", "DANN")
AUGMENTATION_SETTINGS = ("AUG-SIMPLE", "AUG-AUTO", "AUG-ERASING")
SETTINGS = (("PURE-CT",) + tuple(f"{k}-CT-{s}" for k in TRANSLATION_KINDS for s in SOURCE_COMBINATIONS)
            + tuple(f"{k}-CT-{s}" for k in BASELINE_KINDS for s in ("MRI", "PET")) + AUGMENTATION_SETTINGS)


def setting_kind(setting: str) -> str:
    """The family: PURE, MIX, ORACLE, NAIVE, CYCLEGAN, TL, MTL, DANN or AUG."""
    return setting.split("-")[0]


def is_duiit(arm: str) -> bool:
    """Whether an arm (SETTING or SETTING@variant) is DUIIT's joint training (the MIX kind)."""
    return setting_kind(arm.partition(VARIANT_SEPARATOR)[0]) == "MIX"


REFERENCE_ARM = "PURE-CT"   # every arm's gain is measured against P on real CT alone


def oracle_arm(source: str) -> str:
    """The ORACLE arm of a source set ("MRI", "PET", "MRI-PET"): the perfect translator's bound."""
    return f"ORACLE-CT-{source}"


def is_bound(arm: str) -> bool:
    """Whether an arm is one of the gap's ends (PURE-CT below, an ORACLE above), not a method compared."""
    return setting_kind(arm.partition(VARIANT_SEPARATOR)[0]) in ("PURE", "ORACLE")


def setting_sources(setting: str) -> tuple[str, ...]:
    """Source modalities, e.g. ("mri", "pet") for MIX-CT-MRI-PET; () for PURE-CT and AUG-*."""
    return tuple(m.lower() for m in setting.split("-")[2:])


# The experiment's arms (`duiit experiment --arms`): the comparison that settles whether DUIIT helps,
# then the paper's other baselines (Tables 3 and 4) on the phantom's MRI, then its PET settings.
DEFAULT_ARMS = ("PURE-CT", "ORACLE-CT-MRI", "NAIVE-CT-MRI", "CYCLEGAN-CT-MRI", "MIX-CT-MRI")
MRI_BASELINE_ARMS = ("TL-CT-MRI", "MTL-CT-MRI", "DANN-CT-MRI") + AUGMENTATION_SETTINGS
PET_ARMS = ("MIX-CT-PET", "CYCLEGAN-CT-PET", "TL-CT-PET", "MTL-CT-PET", "DANN-CT-PET", "MIX-CT-MRI-PET")
ALL_ARMS = DEFAULT_ARMS + MRI_BASELINE_ARMS + PET_ARMS   # `--arms all`
VARIANT_SEPARATOR = "@"          # MIX-CT-MRI@ct_reader: the same setting with pred_feedback="ct_reader"

# predictor_bn_stats = "by_setting": each setting's statistic as chosen on the phantom's cross-fitted
# validation MSE (5 cohorts, the lower mean of real_ct and training_mix;
# docs/experiment/bn-training-mix/choice.txt). A setting not measured keeps real_ct, the statistic
# every setting had before training_mix existed.
BN_STATS_BY_SETTING = {
    "ORACLE-CT-MRI": "training_mix",    # 41.4 vs 52.8 years², lower on 5 of 5 cohorts
    "NAIVE-CT-MRI": "training_mix",     # 69.9 vs 80.7, 5 of 5
    "MIX-CT-MRI": "training_mix",       # 59.3 vs 59.6, 3 of 5 (a tie the rule decides)
    "CYCLEGAN-CT-MRI": "real_ct",       # 96.0 vs 94.5, training_mix lower on 1 of 5
    "MTL-CT-MRI": "training_mix",       # 66.5 vs 94.2, 5 of 5
    "DANN-CT-MRI": "training_mix",      # 74.1 vs 94.8, 4 of 5
    "MTL-CT-PET": "training_mix",       # 76.9 vs 142.0, 5 of 5 (real_ct let cohort 2 run away)
    "DANN-CT-PET": "training_mix",      # 72.3 vs 88.7, 4 of 5
    "ORACLE-CT-PET": "training_mix",    # 43.7 vs 53.9, 5 of 5 (measured 2026-12-05 on the Zen 5)
    "NAIVE-CT-PET": "training_mix",     # 75.5 vs 133.3, 5 of 5
}


def measured_bn_stats(setting: str) -> str:
    return BN_STATS_BY_SETTING.get(setting, "real_ct")
