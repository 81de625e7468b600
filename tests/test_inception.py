"""IS and FID from a local Inception v3 weights file (the paper's Table 5; no download)."""
import dataclasses

import numpy as np
import pytest
import torch

from duiit_fast.config import TrainConfig
from duiit_fast.errors import DuiitConfigError
from duiit_fast.eval import inception


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """torchvision's Inception v3 architecture with seeded random weights, saved as a state dict
    (the layout of the ImageNet file, which no test may download). Its BatchNorm statistics are
    set from one batch, so that activations neither vanish nor explode as in a trained net."""
    import torchvision
    torch.manual_seed(0)
    model = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None          # cumulative average: one batch sets the statistics
    with torch.no_grad():
        model.train()(torch.rand(4, 3, 299, 299) * 2 - 1)
    path = tmp_path_factory.mktemp("inception") / "inception_v3.pth"
    torch.save(model.state_dict(), path)
    return path


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_a_shift(weights_file):
    model = inception.load_inception(weights_file)
    images = torch.rand(8, 1, 32, 32) * 2 - 1
    same = inception.inception_metrics(model, images, images)
    shifted = inception.inception_metrics(model, (images * 0.3 + 0.5).clamp(-1, 1), images)
    # 8 samples in 2048 dimensions: a singular covariance, so sqrtm leaves a rounding residue.
    assert abs(same["inception_fid"]) < 1e-3 * shifted["inception_fid"]
    assert 1.0 <= same["inception_score"] <= 1000.0


def test_inception_score_bounds():
    uniform = np.full((20, 1000), 1e-3)
    assert inception.inception_score(uniform, splits=2) == pytest.approx((1.0, 0.0))
    one_hot = np.eye(1000)[:20]          # every slice sure of a different class: IS = slices per split
    assert inception.inception_score(one_hot, splits=2)[0] == pytest.approx(10.0, rel=1e-6)


def test_missing_or_foreign_weights_are_one_line(tmp_path):
    with pytest.raises(DuiitConfigError, match="no such file"):
        inception.load_inception(tmp_path / "absent.pth")
    foreign = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(3)}, foreign)
    with pytest.raises(DuiitConfigError, match="not torchvision's Inception v3 weights") as err:
        inception.load_inception(foreign)
    assert "\n" not in str(err.value)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(DuiitConfigError, match="not a readable weights file"):
        inception.load_inception(garbage)
    with pytest.raises(DuiitConfigError, match="fid_weights"):
        TrainConfig(fid_weights=str(tmp_path / "absent.pth")).validate()


def test_experiment_cells_report_is_and_fid_with_weights(tmp_path, tiny_config, weights_file):
    from duiit_fast.experiment import run_experiment
    base = tiny_config(translator_warmup_steps=2, epochs=1, steps_per_epoch=2, num_threads=1)
    base = dataclasses.replace(base, fid_weights=str(weights_file))
    results = run_experiment(tmp_path, cohorts=1, arms=["MIX-CT-MRI"], workers=1, base=base, log=lambda m: None)
    entry = results["arms"]["MIX-CT-MRI"]
    assert entry["inception_fid"][0] > 0 and entry["inception_score"][0] >= 1.0
    assert "| DUIIT |" in (tmp_path / "report.md").read_text()
