"""The joint trainer: gradient paths, image pool, schedule, checkpoints, settings."""
import math

import pytest
import torch

from duiit_fast import Trainer
from duiit_fast.train.pool import ImagePool
from duiit_fast.train.schedule import linear_decay_factor
from duiit_fast.train.step import SourceBatch, generator_predictor_loss, joint_step
from duiit_fast.train.step_functions import build_step_functions


def _one_batch(trainer):
    from duiit_fast.train import batches
    batches.init_samplers(trainer)
    x, r_x = trainer.draw(trainer.data.ct_train, "ct")
    sources = {k: SourceBatch(*trainer.draw(trainer.data.sources[k], k)) for k in trainer.cfg.sources}
    return x, r_x, sources


@pytest.mark.parametrize("lam", [0.0, 1e-3])
def test_predictor_loss_reaches_generator_only_when_lambda_positive(tiny_config, lam):
    trainer = Trainer(tiny_config(lambda_pred=lam), progress=False)
    x, r_x, sources = _one_batch(trainer)
    losses = generator_predictor_loss(trainer.nets, x, r_x, sources, 10.0, lam)
    total, trans, pred = losses.total, losses.trans, losses.pred
    assert torch.allclose(total, trans + lam * pred)
    G = list(trainer.nets["G"]["mri"].parameters())
    # The part of the joint loss that comes from the predictor, λ·L_pred, differentiated w.r.t. G.
    from_pred = torch.autograd.grad(lam * pred, G, retain_graph=True, allow_unused=True)
    norm = sum(float(g.abs().sum()) for g in from_pred if g is not None)
    assert (norm == 0.0) if lam == 0 else (norm > 0.0)
    # In the total, λ = 0 leaves G with the translator's gradient alone.
    g_total = torch.autograd.grad(total, G, retain_graph=True)
    g_trans = torch.autograd.grad(trans, G, retain_graph=True)
    same = all(torch.equal(a, b) for a, b in zip(g_total, g_trans))
    assert same if lam == 0 else not same


def test_predictor_gets_full_lr_and_translator_its_own(tiny_config):
    trainer = Trainer(tiny_config(), progress=False)
    gen, pred = trainer.optimizers["gen"].param_groups, trainer.optimizers["pred"].param_groups
    assert [g["lr"] for g in gen + pred] == [2e-4, 1e-3]
    assert all(g["betas"] == (0.5, 0.999) for g in gen + pred)
    pred_params = {id(p) for p in trainer.nets["P"].parameters()}
    assert {id(p) for g in pred for p in g["params"]} == pred_params
    assert not pred_params & {id(p) for g in gen for p in g["params"]}


def test_discriminators_see_pooled_fakes(tiny_config):
    trainer = Trainer(tiny_config(pool_size=4), progress=False)
    x, r_x, sources = _one_batch(trainer)
    pool = trainer.pools["ct"]["mri"]
    returned = []
    original = pool.query
    pool.query = lambda images: returned.append(original(images)) or returned[-1]
    seen = []
    trainer.nets["D_t"].register_forward_pre_hook(lambda m, inp: seen.append(inp[0]))
    joint_step(trainer.nets, trainer.optimizers, trainer.pools, x, r_x, sources, trainer.cfg,
               build_step_functions(trainer.nets, trainer.cfg))
    assert len(returned) == 1 and not returned[0].requires_grad
    assert any(s is returned[0] for s in seen)
    assert len(pool.images) == x.shape[0]  # the pool kept the batch's fakes


def test_image_pool_fills_then_swaps_half_and_is_seedable():
    def run(seed):
        pool = ImagePool(4, torch.Generator().manual_seed(seed))
        first = pool.query(torch.arange(4.0).reshape(4, 1, 1, 1))
        assert torch.equal(first.flatten(), torch.arange(4.0))  # filling: returned as given
        outs = [pool.query(torch.full((1, 1, 1, 1), 100.0 + i)) for i in range(400)]
        return torch.cat(outs).flatten()
    a, b = run(0), run(0)
    assert torch.equal(a, b)
    fresh = sum(float(v) == 100.0 + i for i, v in enumerate(a)) / 400
    assert 0.4 < fresh < 0.6
    assert not torch.equal(a, run(1))


def test_schedule_learning_rates_at_paper_epochs(tiny_config):
    trainer = Trainer(tiny_config(epochs=200, decay_start_epoch=100), progress=False)
    lrs = {}
    for epoch in range(200):
        if epoch in (0, 100, 150, 199):
            lrs[epoch] = [trainer.optimizers[k].param_groups[0]["lr"] for k in ("gen", "pred")]
        for k in ("gen", "pred"):
            trainer.optimizers[k].step()
            trainer.schedulers[k].step()
    assert lrs[0] == pytest.approx([2e-4, 1e-3])
    assert lrs[100] == pytest.approx([2e-4, 1e-3])
    assert lrs[150] == pytest.approx([1e-4, 5e-4])
    assert lrs[199] == pytest.approx([2e-6, 1e-5])
    assert linear_decay_factor(200, 200, 100) == 0.0


def test_mix_trains_and_saves_each_epoch(tiny_config):
    cfg = tiny_config("MIX-CT-MRI-PET")
    trainer = Trainer(cfg, progress=False)
    history = trainer.fit()
    assert [h["epoch"] for h in history] == [0, 1]
    assert set(trainer.nets["G"]) == {"mri", "pet"}
    assert all(math.isfinite(h["loss"]) for h in history)
    metrics = trainer.evaluate("test")
    assert metrics["n_patients"] == cfg.phantom.ct_test_patients and metrics["mse"] > 0
    assert (trainer.cfg.out_dir and (__import__("pathlib").Path(cfg.out_dir) / "checkpoint.pt").exists())


@pytest.mark.parametrize("setting", ["PURE-CT", "ORACLE-CT-PET", "NAIVE-CT-MRI"])
def test_predictor_only_settings(tiny_config, setting):
    trainer = Trainer(tiny_config(setting), progress=False)
    seen = []
    # Training calls only (BatchNorm re-estimation also runs P in train mode, without gradients).
    trainer.nets["P"].register_forward_pre_hook(
        lambda m, inp: seen.append(inp[0].shape[0]) if m.training and torch.is_grad_enabled() else None)
    trainer.fit()
    assert set(trainer.nets) == {"P"}
    assert len(trainer.data.ct_train.patients) == trainer.cfg.phantom.ct_train_patients
    extra = trainer.extra_sets()
    if setting == "PURE-CT":
        assert extra == {} and set(seen) == {4}
    else:
        # One call per step: the real-CT batch plus an equal batch of oracle CT / raw source slices.
        (name, images), = extra.items()
        assert set(seen) == {8} and len(images) == trainer.cfg.phantom.source_patients * 4
        expected = trainer.data.sources_as_ct if setting.startswith("ORACLE") else trainer.data.sources
        assert torch.equal(images.images, expected[name].images)


def test_resume_continues_exactly(tiny_config):
    straight = Trainer(tiny_config(epochs=3, out_dir=tiny_config().out_dir + "-a"), progress=False)
    straight.fit()
    interrupted = Trainer(tiny_config(epochs=3, out_dir=tiny_config().out_dir + "-b"), progress=False)
    interrupted.cfg.epochs = 2  # stop after two epochs, as a killed run would
    interrupted.fit()
    resumed = Trainer(tiny_config(epochs=3, out_dir=tiny_config().out_dir + "-b"), progress=False)
    resumed.fit(resume=True)
    assert resumed.epoch == 3 and len(resumed.history) == 3
    for a, b in zip(straight.nets["P"].parameters(), resumed.nets["P"].parameters()):
        torch.testing.assert_close(a, b)


def test_save_load_translate(tiny_config, tmp_path):
    trainer = Trainer(tiny_config(), progress=False)
    trainer.fit()
    path = trainer.save(tmp_path / "model.pt")
    loaded = Trainer.load(path)
    images = trainer.data.sources["mri"].images[:3]
    torch.testing.assert_close(loaded.translate(images, "mri"), trainer.translate(images, "mri"))
    assert loaded.translate(images[:, 0].numpy(), "mri").shape == (3, 1, 32, 32)
    with pytest.raises(Exception, match="no translator for source 'pet'"):
        loaded.translate(images, "pet")


def test_reference_and_cpp_backends_give_matching_losses(tiny_config, monkeypatch):
    """The run's backend reaches every layer and loss without being passed to them: the C++ ops run
    in the cpp run (steps and translations) and never in the reference run."""
    from duiit_fast.ops import instance_norm, losses as loss_ops
    calls = {"instance_norm_act_cpp": 0, "loss_cpp": 0}
    for module, name in ((instance_norm, "instance_norm_act_cpp"), (loss_ops, "loss_cpp")):
        op = getattr(module, name)

        def counted(*args, _op=op, _name=name):
            calls[_name] += 1
            return _op(*args)
        monkeypatch.setattr(module, name, counted)
    losses, used = {}, {}
    for backend in ("reference", "cpp"):
        trainer = Trainer(tiny_config(backend=backend, epochs=1, steps_per_epoch=3,
                                      out_dir=f"{tiny_config().out_dir}-{backend}"), progress=False)
        losses[backend] = trainer.fit()[0]
        used[backend] = dict(calls)
        calls.update(instance_norm_act_cpp=0, loss_cpp=0)
    assert used["reference"] == {"instance_norm_act_cpp": 0, "loss_cpp": 0}
    assert used["cpp"]["instance_norm_act_cpp"] > 0 and used["cpp"]["loss_cpp"] > 0
    for key in ("loss", "trans", "pred", "d_t", "d_s"):
        assert losses["cpp"][key] == pytest.approx(losses["reference"][key], rel=1e-3, abs=1e-5)


def test_split_protocol_reports_mean_and_std(tiny_config, tmp_path):
    import json
    from duiit_fast.train.protocol import run_splits
    summary = run_splits(tiny_config("PURE-CT", epochs=1, out_dir=str(tmp_path / "p")), 2, progress=False)
    saved = json.loads((tmp_path / "p" / "splits.json").read_text())
    assert [r["split_seed"] for r in saved["runs"]] == [0, 1]
    mses = [r["mse"] for r in saved["runs"]]
    assert saved["mse_mean"] == pytest.approx(sum(mses) / 2) and saved["mse_std"] > 0
    assert "± " in summary["table"] and (tmp_path / "p" / "split-1" / "checkpoint.pt").exists()


def test_each_epoch_logs_where_its_time_went(tiny_config):
    trainer = Trainer(tiny_config("MIX-CT-MRI", epochs=2, decay_start_epoch=1, steps_per_epoch=3), progress=False)
    history = trainer.fit()
    for record in history:
        assert record["data_seconds"] > 0 and record["step_seconds"] > 0 and record["eval_seconds"] > 0
        assert record["data_seconds"] + record["step_seconds"] == pytest.approx(record["seconds"])
        assert record["checkpoint_seconds"] > 0 and record["pairs_per_s"] > 0
        # One step's FLOPs, counted once (forward + backward of every net the step runs), and the MFU.
        assert record["flops_per_step"] == history[0]["flops_per_step"] > 0
        assert record["flops_per_s"] > 0 and 0 < record["mfu"] < 1


def test_counting_a_steps_flops_changes_nothing_it_computes(tiny_config):
    """The FLOP count observes one step of the first epoch: a run that counts ends with the same
    weights, bit for bit, as one that does not (its count preset)."""
    counted = Trainer(tiny_config("MIX-CT-MRI", epochs=1, steps_per_epoch=3), progress=False)
    counted.fit()
    plain = Trainer(tiny_config("MIX-CT-MRI", epochs=1, steps_per_epoch=3, out_dir=counted.cfg.out_dir + "-p"),
                    progress=False)
    plain.flops_per_step = counted.flops_per_step
    plain.fit()
    for name in counted.nets:
        for (k, a), b in zip(counted.nets[name].state_dict().items(), plain.nets[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{k}"
