import pytest
import torch

from duiit_fast.config import PhantomConfig, TrainConfig


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_phantom() -> PhantomConfig:
    return PhantomConfig(ct_train_patients=3, ct_val_patients=2, ct_test_patients=2, source_patients=3,
                         slices_per_patient=4, ct_size=48, mri_size=32, pet_size=16, seed=1)


# label_cues on: the suite was written when the label-cue reader was on by default (test_examples has it off).
TINY_MODEL_TOML = {"image_size": 32, "ngf": 4, "ndf": 4, "n_blocks": 1, "predictor": "small",
                   "batch_size": 2, "epochs": 1, "decay_start_epoch": 0, "steps_per_epoch": 2, "reader_steps": 3,
                   "label_cues": True, "pictures": False}   # pictures: drawn where a test asks (test_run_folder)


def write_train_toml(path, **fields):
    """A `duiit train` config with the tiny model sizes plus `fields` (strings quoted)."""
    merged = {**TINY_MODEL_TOML, **fields}
    def toml(v):
        return f'"{v}"' if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
    lines = [f"{k} = {toml(v)}" for k, v in merged.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def phantom_toml(pc: PhantomConfig) -> str:
    """A [phantom] table for a `duiit train` config file."""
    import dataclasses
    from duiit_fast.config_doc import toml_value
    return "[phantom]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in dataclasses.asdict(pc).items())


@pytest.fixture
def tiny_config(tiny_phantom, tmp_path):
    def make(setting="MIX-CT-MRI", **overrides):
        fields = dict(setting=setting, image_size=32, ngf=4, ndf=4, n_blocks=1, predictor="small",
                      batch_size=2, predictor_batch_size=4, epochs=2, decay_start_epoch=1,
                      steps_per_epoch=2, phantom=tiny_phantom, out_dir=str(tmp_path / setting), seed=0,
                      reader_steps=3, label_cues=True, pictures=False,
                      # fp32 unless a test asks: "auto" is bf16 on CPUs with native bf16, and the
                      # suite's exactness checks must not depend on which CPU runs them.
                      precision="fp32")
        fields.update(overrides)
        return replaced(TrainConfig(phantom=fields.pop("phantom")), **fields)
    return make


def replaced(cfg: TrainConfig, **fields) -> TrainConfig:
    """cfg with `fields` changed; a table's field by its flat name (precision=, augment_flip=), as
    configuration files and checkpoints written before the tables still name them."""
    data = cfg.to_dict()
    data.update(fields)
    phantom = data.pop("phantom")
    config = TrainConfig.from_dict({**data, "phantom": {}})
    config.phantom = phantom if isinstance(phantom, PhantomConfig) else PhantomConfig(**phantom)
    return config


# Patient ids as a hostile or careless dataset may hold them: separators, climbing out, an absolute
# path, a name of dots, a reserved device name, ids that differ only in case, control characters.
def hostile_ids(modality: str, absolute_target) -> list[str]:
    return [f"../escaped-{modality}", str(absolute_target / f"abs-{modality}"), f"sub/dir/{modality}", "..",
            "CON", f"Case-{modality}", f"case-{modality}", f"tab\tnew\nline-{modality}"]


def relabel(folder, new_ids) -> None:
    """Give a dataset folder's patients the ids `new_ids` (in order of first appearance)."""
    import csv
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    order = list(dict.fromkeys(r["patient_id"] for r in rows))
    mapping = dict(zip(order, new_ids))
    for r in rows:
        r["patient_id"] = mapping[r["patient_id"]]
    with open(folder / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="session")
def hostile_run(tmp_path_factory):
    """CT, MRI and PET folders whose patient ids try to escape, and a tiny MIX-CT-MRI-PET model
    trained from them: (root, checkpoint, absolute_target). Nothing may ever appear under
    absolute_target, nor beside root's folders."""
    from duiit_fast.cli import main
    root = tmp_path_factory.mktemp("hostile")
    target = tmp_path_factory.mktemp("never-written")
    assert main(["phantoms", "--out", str(root / "data"), "--ct-patients", "8", "--source-patients", "8",
                 "--slices", "2", "--ct-size", "40", "--mri-size", "32", "--pet-size", "16", "--no-progress"]) == 0
    for modality in ("ct", "mri", "pet"):
        relabel(root / "data" / modality, hostile_ids(modality, target))
    config = write_train_toml(root / "run.toml", setting="MIX-CT-MRI-PET", ct="data/ct", mri="data/mri",
                              pet="data/pet", val_fraction=0.25, test_fraction=0.25, out_dir="run",
                              label_cues=False)
    assert main(["train", "--config", str(config), "--no-progress"]) == 0
    return root, root / "run" / "checkpoint.pt", target
