"""The paper's augmentation baselines: CT only, torchvision's own transforms, one draw per slice."""
import pytest
import torch
from torchvision.transforms import v2

from duiit_fast import Trainer
from duiit_fast.experiment import parse_arm
from duiit_fast.train.augment import AUGMENTATIONS, augment_batch, paper_augmentation


@pytest.mark.parametrize("setting, mechanism", [("AUG-SIMPLE", v2.RandomRotation), ("AUG-AUTO", v2.AutoAugment),
                                                ("AUG-ERASING", v2.RandomErasing)])
def test_augmentation_is_torchvisions_and_per_slice(setting, mechanism):
    transform = paper_augmentation(setting, 32)
    from duiit_fast.train.augment import _OnUint8
    inner = transform.transform if isinstance(transform, _OnUint8) else transform
    parts = getattr(inner, "transforms", [inner])
    assert any(isinstance(t, mechanism) for t in parts)
    torch.manual_seed(0)
    x = torch.rand(16, 1, 32, 32) * 2 - 1
    same = x[:1].expand(16, 1, 32, 32).clone()
    y = augment_batch(transform, same)
    assert y.shape == same.shape and y.dtype == torch.float32
    assert not torch.equal(y, same)                                   # it changes slices
    assert len({tuple(img.flatten()[:64].tolist()) for img in y}) > 1  # with its own draw per slice
    if setting != "AUG-ERASING":
        assert y.min() >= -1 and y.max() <= 1


@pytest.mark.parametrize("setting", AUGMENTATIONS)
def test_augmentation_arms_train_on_ct_alone(tiny_config, setting):
    trainer = Trainer(tiny_config(setting), progress=False)
    seen = []
    trainer.nets["P"].register_forward_pre_hook(
        lambda m, inp: seen.append(inp[0].clone()) if m.training and torch.is_grad_enabled() else None)
    trainer.fit()
    assert set(trainer.nets) == {"P"} and trainer.extra_sets() == {} and len(trainer.history) == 2
    assert all(batch.shape[0] == trainer.cfg.predictor_batch_size for batch in seen)
    assert parse_arm(setting) == (setting, {"setting": setting})


def test_augmentation_resumes_exactly(tiny_config, tmp_path):
    whole = Trainer(tiny_config("AUG-AUTO", out_dir=str(tmp_path / "whole"), epochs=2), progress=False)
    whole.fit()
    half = Trainer(tiny_config("AUG-AUTO", out_dir=str(tmp_path / "half"), epochs=1), progress=False)
    half.fit()
    resumed = Trainer(tiny_config("AUG-AUTO", out_dir=str(tmp_path / "half"), epochs=2), progress=False)
    resumed.fit(resume=True)
    for a, b in zip(whole.nets["P"].parameters(), resumed.nets["P"].parameters()):
        assert torch.equal(a, b)
