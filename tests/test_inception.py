"""IS and FID from a local Inception v3 weights file (the paper's Table 5; no download)."""
import dataclasses

import pytest
import torch

from duiit_fast.config import TrainConfig
from duiit_fast.errors import DuiitConfigError
from duiit_fast.eval import inception


def _random_inception(num_classes: int, aux_logits: bool):
    """torchvision's Inception v3 architecture with seeded random weights. A 1008-class head gives
    the key layout of torch-fidelity's TF-Inception file, a 1000-class one torchvision's ImageNet
    file (no test may download either). BatchNorm statistics are set from one batch, so that
    activations neither vanish nor explode as in a trained net."""
    import torchvision
    torch.manual_seed(0)
    model = torchvision.models.inception_v3(weights=None, aux_logits=aux_logits, init_weights=False,
                                            num_classes=num_classes)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None          # cumulative average: one batch sets the statistics
    with torch.no_grad():
        model.train()(torch.rand(4, 3, 299, 299) * 2 - 1)
    return model


@pytest.fixture(scope="module", params=["torchvision", "tf-inception"])
def weights_file(request, tmp_path_factory):
    classes = {"torchvision": inception.TORCHVISION_CLASSES, "tf-inception": inception.TF_CLASSES}[request.param]
    model = _random_inception(classes, aux_logits=request.param == "torchvision")
    path = tmp_path_factory.mktemp("inception") / f"{request.param}.pth"
    torch.save(model.state_dict(), path)
    return request.param, path


def test_each_weights_file_loads_as_its_own_kind(weights_file):
    kind, path = weights_file
    assert inception.load_inception(path).kind == kind


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_a_shift(weights_file):
    nets = inception.load_inception(weights_file[1])
    images = torch.rand(8, 1, 32, 32) * 2 - 1
    same = inception.inception_metrics(nets, images, images)
    shifted = inception.inception_metrics(nets, (images * 0.3 + 0.5).clamp(-1, 1), images)
    # 8 samples in 2048 dimensions: a singular covariance, so sqrtm leaves a rounding residue.
    assert abs(same["inception_fid"]) < 1e-3 * shifted["inception_fid"]
    assert 1.0 <= same["inception_score"] <= 1000.0
    assert same["inception_kind"] == weights_file[0]


def test_torchvision_features_are_the_pool_layer_and_logits_the_head(weights_file):
    kind, path = weights_file
    if kind != "torchvision":
        pytest.skip("the torchvision wrapper only")
    nets = inception.load_inception(path)
    x = inception.to_uint8_rgb(torch.rand(2, 1, 40, 40) * 2 - 1)
    pool, logits = nets.fid(x), nets.score(x)
    assert pool.shape == (2, 2048) and logits.shape == (2, 1000)   # log-probabilities of the head
    torch.testing.assert_close(torch.log_softmax(nets.score.net.net.fc(pool).double(), 1).clamp_min(-100), logits)


def test_metrics_leave_the_global_rng_untouched(weights_file):
    nets = inception.load_inception(weights_file[1])
    images = torch.rand(6, 1, 32, 32) * 2 - 1
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    inception.inception_metrics(nets, images, images)
    torch.testing.assert_close(torch.rand(3), expected)


def test_slices_become_the_8_bit_images_they_are_saved_as():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 2, 2)
    out = inception.to_uint8_rgb(x)
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 2, 2)
    assert out[0, 0].flatten().tolist() == [0, 128, 255, 255]


def test_missing_or_foreign_weights_are_one_line(tmp_path):
    with pytest.raises(DuiitConfigError, match="no such file"):
        inception.load_inception(tmp_path / "absent.pth")
    foreign = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(3)}, foreign)
    with pytest.raises(DuiitConfigError, match="not Inception v3 weights") as err:
        inception.load_inception(foreign)
    assert "\n" not in str(err.value)
    wrong_head = tmp_path / "wrong_head.pth"
    torch.save({"fc.weight": torch.zeros(10, 2048)}, wrong_head)
    with pytest.raises(DuiitConfigError, match="head of 10 classes"):
        inception.load_inception(wrong_head)
    for classes, name in ((inception.TORCHVISION_CLASSES, "torchvision's"), (inception.TF_CLASSES, "TF-Inception")):
        partial = tmp_path / f"partial{classes}.pth"
        torch.save({"fc.weight": torch.zeros(classes, 2048)}, partial)
        with pytest.raises(DuiitConfigError, match=f"not {name} Inception v3 weights|not {name} weights") as err:
            inception.load_inception(partial)
        assert "\n" not in str(err.value)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(DuiitConfigError, match="not a readable weights file"):
        inception.load_inception(garbage)
    with pytest.raises(DuiitConfigError, match="fid_weights"):
        TrainConfig(fid_weights=str(tmp_path / "absent.pth")).validate()


def test_a_weights_file_that_would_run_code_is_refused(tmp_path):
    """torch-fidelity unpickles its file with weights_only=False; ours is read tensors-only first."""
    import os

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))
    evil = tmp_path / "evil.pth"
    torch.save({"fc.weight": torch.zeros(inception.TF_CLASSES, 2048), "x": Payload()}, evil)
    with pytest.raises(DuiitConfigError, match="not a readable weights file"):
        inception.load_inception(evil)
    assert not (tmp_path / "pwned").exists()


def test_experiment_cells_report_is_and_fid_with_weights(tmp_path, tiny_config, weights_file):
    if weights_file[0] == "torchvision":
        pytest.skip("the wiring into experiment cells is the same for both kinds: tested with TF-Inception")
    from duiit_fast.experiment import run_experiment
    base = tiny_config(translator_warmup_steps=2, epochs=1, steps_per_epoch=2, num_threads=1)
    base = dataclasses.replace(base, fid_weights=str(weights_file[1]))
    results = run_experiment(tmp_path, cohorts=1, arms=["MIX-CT-MRI"], workers=1, base=base, log=lambda m: None)
    entry = results["arms"]["MIX-CT-MRI"]
    assert entry["inception_fid"][0] > 0 and entry["inception_score"][0] >= 1.0
    assert entry["inception_kind"] == [weights_file[0]]
    assert "| DUIIT |" in (tmp_path / "report.md").read_text()
