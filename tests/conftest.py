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


TINY_MODEL_TOML = {"image_size": 32, "ngf": 4, "ndf": 4, "n_blocks": 1, "predictor": "small",
                   "batch_size": 2, "epochs": 1, "decay_start_epoch": 0, "steps_per_epoch": 2, "reader_steps": 3}


def write_train_toml(path, **fields):
    """A `duiit train` config with the tiny model sizes plus `fields` (strings quoted)."""
    merged = {**TINY_MODEL_TOML, **fields}
    lines = [f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in merged.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def tiny_config(tiny_phantom, tmp_path):
    def make(setting="MIX-CT-MRI", **overrides):
        fields = dict(setting=setting, image_size=32, ngf=4, ndf=4, n_blocks=1, predictor="small",
                      batch_size=2, predictor_batch_size=4, epochs=2, decay_start_epoch=1,
                      steps_per_epoch=2, phantom=tiny_phantom, out_dir=str(tmp_path / setting), seed=0,
                      reader_steps=3,
                      # fp32 unless a test asks: "auto" is bf16 on CPUs with native bf16, and the
                      # suite's exactness checks must not depend on which CPU runs them.
                      precision="fp32")
        fields.update(overrides)
        return TrainConfig(**fields)
    return make
