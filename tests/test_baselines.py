"""TL, MTL and DANN with the same predictor: each trains, and its defining mechanism is there."""
import pytest
import torch

from duiit_fast import Trainer
from duiit_fast.train.baselines import dann_coefficient, dann_step, embed, reverse_gradient


def _forward_inputs(trainer):
    seen = []
    trainer.nets["P"].register_forward_pre_hook(
        lambda m, inp: seen.append(inp[0].shape[0]) if m.training and torch.is_grad_enabled() else None)
    return seen


def test_gradient_reversal_and_its_schedule():
    x = torch.randn(5, requires_grad=True)
    (reverse_gradient(x, 0.3) * 2).sum().backward()
    torch.testing.assert_close(x.grad, torch.full((5,), -0.6))
    assert dann_coefficient(0.0) == 0.0 and dann_coefficient(1.0) > 0.99
    assert 0 < dann_coefficient(0.1) < dann_coefficient(0.5) < dann_coefficient(0.9)


def test_tl_pretrains_on_the_source_then_fine_tunes_on_ct_with_a_fresh_adam(tiny_config):
    trainer = Trainer(tiny_config("TL-CT-MRI"), progress=False)
    trainer.prepare()
    init = [p.clone() for p in trainer.nets["P"].parameters()]
    seen = _forward_inputs(trainer)
    trainer.pretrain_on_source()
    budget = trainer.cfg.epochs * trainer.steps_per_epoch()
    assert trainer.pretrain_steps == budget and len(seen) == budget
    assert not all(torch.equal(a, b) for a, b in zip(init, trainer.nets["P"].parameters()))
    assert not trainer.optimizers["pred"].state        # the fine-tune starts a fresh Adam
    trainer.fit()
    assert len(trainer.history) == 2 and trainer.pretrain_steps == budget   # not pretrained twice
    assert trainer.extra_sets() == {}                  # the fine-tune is CT only


def test_mtl_shares_the_trunk_and_trains_a_source_head(tiny_config):
    trainer = Trainer(tiny_config("MTL-CT-MRI"), progress=False)
    head = [p.clone() for p in trainer.nets["P_src"].parameters()]
    trainer.fit()
    assert not all(torch.equal(a, b) for a, b in zip(head, trainer.nets["P_src"].parameters()))
    assert all("source_pred" in r for r in trainer.history)
    # Evaluation uses the CT head (P itself); the source head is not part of the predictor.
    assert trainer.eval_predictor is trainer.nets["P"]


def test_dann_domain_classifier_pushes_the_trunk_through_reversed_gradients(tiny_config):
    trainer = Trainer(tiny_config("DANN-CT-MRI"), progress=False)
    trainer.prepare()
    x, r_x = trainer.draw(trainer.data.ct_train, "ct")
    xs, r_s = trainer.draw(trainer.data.sources["mri"], "mri")
    grads = {}
    for coefficient in (0.0, 1.0):
        state = {k: {n: t.clone() for n, t in net.state_dict().items()} for k, net in trainer.nets.items()}
        opt = torch.optim.SGD([p for k in ("P", "D_dom") for p in trainer.nets[k].parameters()], lr=0.0)
        parts = dann_step(trainer.nets, opt, x, r_x, xs, r_s, trainer.age_std, coefficient)
        grads[coefficient] = trainer.nets["P"].features[0].weight.grad.clone()
        assert trainer.nets["D_dom"][0].weight.grad.abs().sum() > 0 and parts["domain"] > 0
        for k, net in trainer.nets.items():
            net.load_state_dict(state[k])
    assert not torch.allclose(grads[0.0], grads[1.0])   # the domain term reaches the trunk, reversed
    assert embed(trainer.nets["P"], x).shape == (len(x), trainer.nets["D_dom"][0].in_features)
    trainer.fit()
    assert all("domain" in r for r in trainer.history) and len(trainer.history) == 2


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("setting", ["TL-CT-MRI", "MTL-CT-PET", "DANN-CT-MRI"])
def test_baselines_resume_exactly(tiny_config, tmp_path, monkeypatch, setting):
    whole = Trainer(tiny_config(setting, out_dir=str(tmp_path / "whole")), progress=False)
    whole.fit()
    save = Trainer.save

    def save_then_stop(self, path):   # the run dies right after its first epoch's checkpoint
        out = save(self, path)
        if self.epoch == 1:
            raise _Interrupted
        return out
    monkeypatch.setattr(Trainer, "save", save_then_stop)
    with pytest.raises(_Interrupted):
        Trainer(tiny_config(setting, out_dir=str(tmp_path / "cut")), progress=False).fit()
    monkeypatch.setattr(Trainer, "save", save)
    resumed = Trainer(tiny_config(setting, out_dir=str(tmp_path / "cut")), progress=False)
    resumed.fit(resume=True)
    for k in whole.nets:
        for a, b in zip(whole.nets[k].parameters(), resumed.nets[k].parameters()):
            assert torch.equal(a, b), k


def test_naive_source_weight_weighs_naives_raw_slices_and_is_exact_at_one(tiny_config):
    """NAIVE gets the knob DUIIT's P has: its raw MRI slices weigh w in P's loss, real CT 1. At w = 1
    the step is the recorded one bit for bit (no weights multiplied in)."""
    from duiit_fast.train.step import squared_error_sum
    losses = {}
    for w in (1.0, 0.5):
        trainer = Trainer(tiny_config("NAIVE-CT-MRI", naive_source_weight=w, out_dir=f"{tiny_config().out_dir}-{w}"),
                          progress=False)
        trainer.prepare()
        torch.manual_seed(0)
        x, ages = torch.rand(2, 1, 32, 32) * 2 - 1, torch.randn(2)
        raw, raw_ages = torch.rand(2, 1, 32, 32) * 2 - 1, torch.randn(2)
        images, targets = torch.cat([x, raw]), torch.cat([ages, raw_ages])
        losses[w] = trainer.step_functions.predictor_loss(images, targets, (2, 2))
        P = trainer.nets["P"]
        with torch.no_grad():
            out = P(images).squeeze(1)
        scale = trainer.age_std
        if w == 1.0:
            assert torch.equal(losses[w], squared_error_sum(out, targets, scale))
        else:
            expected = squared_error_sum(out[:2], ages, scale) + w * squared_error_sum(out[2:], raw_ages, scale)
            assert float(losses[w]) == pytest.approx(float(expected), rel=1e-5)
    history = Trainer(tiny_config("NAIVE-CT-MRI", naive_source_weight=0.5), progress=False).fit()
    assert len(history) == 2
    oracle = Trainer(tiny_config("ORACLE-CT-MRI", naive_source_weight=0.5), progress=False)   # ORACLE: the bound, as ever
    assert oracle.method.extra_weight(oracle.cfg) == 1.0
