"""DUIIT as the paper writes it and the knobs around it: L_pred units, the gradient share, the
translator warm-up, ct_reader feedback, the two-stage CycleGAN, validation selection, label cues."""
import math

import numpy as np
import pytest
import torch

from duiit_fast import Trainer
from duiit_fast.eval.evaluate import cross_fitted_val_mse
from duiit_fast.eval.label_cues import (AgeReader, gaussian_kernels, label_cue_metrics, texture_augment,
                                        train_reader)
from duiit_fast.train.step import SourceBatch, generator_predictor_loss, squared_error_sum


def _batch(trainer):
    trainer._prepare()
    x, r_x = trainer._batch(trainer.data.ct_train, "ct")
    return x, r_x, {k: SourceBatch(*trainer._batch(trainer.data.sources[k], k)) for k in trainer.cfg.sources}


def test_squared_error_sum_is_in_label_units():
    # Standardised errors of 0.5 and -1 with an age std of 20 years: (10² + 20²) = 500 years².
    pred, target = torch.tensor([0.5, 0.0]), torch.tensor([0.0, 1.0])
    assert float(squared_error_sum(pred, target, 20.0)) == pytest.approx(500.0)


def test_pred_loss_sums_real_and_translated_errors_in_years(tiny_config):
    trainer = Trainer(tiny_config(), progress=False)
    x, r_x, sources = _batch(trainer)
    losses = generator_predictor_loss(trainer.nets, x, r_x, sources, 10.0, 1e-3, label_scale=trainer.age_std)
    with torch.no_grad():
        images = torch.cat([x, losses.fakes["mri"][0]])
        years = trainer.nets["P"](images).squeeze(1) * trainer.age_std + trainer.age_mean
        truth = torch.cat([r_x, sources["mri"].ages]) * trainer.age_std + trainer.age_mean
    # Eq. 2: a sum over every sample (not a mean), in years².
    pred, total, trans = (float(t.detach()) for t in (losses.pred, losses.total, losses.trans))
    assert pred == pytest.approx(float((years - truth).square().sum()), rel=1e-4)
    assert total == pytest.approx(trans + 1e-3 * pred, rel=1e-5)


def test_raw_sources_add_the_untranslated_slices_to_the_pred_loss(tiny_config):
    from duiit_fast.errors import DuiitConfigError
    trainer = Trainer(tiny_config(predictor_raw_sources=True), progress=False)
    x, r_x, sources = _batch(trainer)
    torch.manual_seed(0)
    losses = generator_predictor_loss(trainer.nets, x, r_x, sources, 10.0, 1e-3, label_scale=trainer.age_std,
                                      raw_sources=True)
    y = sources["mri"]
    with torch.no_grad():
        images = torch.cat([x, losses.fakes["mri"][0], y.images])   # one call: BatchNorm sees all three
        years = trainer.nets["P"](images).squeeze(1) * trainer.age_std + trainer.age_mean
        truth = torch.cat([r_x, y.ages, y.ages]) * trainer.age_std + trainer.age_mean
    assert float(losses.pred.detach()) == pytest.approx(float((years - truth).square().sum()), rel=1e-4)
    torch.manual_seed(0)
    plain = generator_predictor_loss(trainer.nets, x, r_x, sources, 10.0, 1e-3, label_scale=trainer.age_std)
    assert torch.equal(plain.trans, losses.trans) and float(plain.pred.detach()) != float(losses.pred.detach())
    history = trainer.fit()   # the joint step logs a per-sample MSE over 4 + 2·4 slices
    assert len(history) == 2 and all(math.isfinite(r["pred"]) for r in history)
    with pytest.raises(DuiitConfigError, match="predictor_raw_sources"):
        tiny_config(predictor_raw_sources=True, source_calibration=True).validate()


def test_source_weight_moves_only_the_predictors_share_of_eq_2(tiny_config):
    """w = 0.25: P's gradient is that of Σ real + w·Σ translated, G's that of eq. 2 unweighted."""
    from duiit_fast.errors import DuiitConfigError
    trainer = Trainer(tiny_config(), progress=False)
    x, r_x, sources = _batch(trainer)
    nets, w = trainer.nets, 0.25
    nets["P"].eval()   # running BatchNorm statistics: no coupling of real-CT terms to G through the batch

    def grads(source_weight, params):
        torch.manual_seed(0)
        losses = generator_predictor_loss(nets, x, r_x, sources, 10.0, 1e-3, label_scale=trainer.age_std,
                                          source_weight=source_weight)
        return losses, torch.autograd.grad(1e-3 * losses.feedback, params, allow_unused=True)
    g_params = list(nets["G"]["mri"].parameters())
    p_params = list(nets["P"].parameters())
    plain, g_plain = grads(1.0, g_params)
    weighted, g_weighted = grads(w, g_params)
    for a, b in zip(g_plain, g_weighted):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-9)
    # The logged L_pred is eq. 2 whatever w; the total carries the weighted sum.
    assert torch.equal(weighted.pred, plain.pred)
    with torch.no_grad():
        fake = plain.fakes["mri"][0]
        real_err = squared_error_sum(nets["P"](x).squeeze(1), r_x, trainer.age_std)
        src_err = squared_error_sum(nets["P"](fake).squeeze(1), sources["mri"].ages, trainer.age_std)
    expected = weighted.trans.detach() + 1e-3 * (real_err + w * src_err)
    assert float(weighted.total.detach()) == pytest.approx(float(expected), rel=1e-5)
    # P's gradient: real CT at weight 1, the translations at w.
    _, p_weighted = grads(w, p_params)
    real_only = torch.autograd.grad(1e-3 * squared_error_sum(nets["P"](x).squeeze(1), r_x, trainer.age_std),
                                    p_params)
    src_only = torch.autograd.grad(1e-3 * squared_error_sum(nets["P"](fake.detach()).squeeze(1), sources["mri"].ages,
                                                            trainer.age_std), p_params)
    for got, a, b in zip(p_weighted, real_only, src_only):
        torch.testing.assert_close(got, a + w * b, rtol=1e-4, atol=1e-9)
    nets["P"].train()
    history = Trainer(tiny_config(predictor_source_weight=w), progress=False).fit()
    assert len(history) == 2 and all(math.isfinite(r["pred"]) for r in history)
    with pytest.raises(DuiitConfigError, match="predictor_source_weight"):
        tiny_config(predictor_source_weight=0.0).validate()


def test_separate_domain_batchnorm_normalises_each_group_by_itself(tiny_config):
    from duiit_fast.errors import DuiitConfigError
    from duiit_fast.train.networks import predictor_outputs
    trainer = Trainer(tiny_config(predictor_bn_domains="separate"), progress=False)
    x, _, sources = _batch(trainer)
    y = sources["mri"].images
    P = trainer.nets["P"]
    assert P.separate_domain_bn and not Trainer(tiny_config(), progress=False).nets["P"].separate_domain_bn
    with torch.no_grad():
        separate = predictor_outputs(trainer.nets, torch.cat([x, y]), [len(x), len(y)])
        assert torch.allclose(separate, torch.cat([P(x), P(y)]).squeeze(1), atol=1e-6)
        assert not torch.allclose(separate, P(torch.cat([x, y])).squeeze(1), atol=1e-3)   # mixed statistics
        P.eval()   # evaluation: running statistics, one call, whatever the setting
        assert torch.equal(predictor_outputs(trainer.nets, torch.cat([x, y]), [len(x), len(y)]),
                           P(torch.cat([x, y])).squeeze(1))
    P.train()
    assert all(math.isfinite(r["loss"]) for r in trainer.fit())
    assert set(trainer.state_dict()["nets"]["P"]) == set(P.state_dict())
    with pytest.raises(DuiitConfigError, match="predictor_bn_domains"):
        tiny_config(predictor_bn_domains="per-batch").validate()


def test_gradient_share_is_logged_and_vanishes_without_lambda(tiny_config):
    shares = {}
    for lam in (0.0, 1e-3):
        trainer = Trainer(tiny_config(lambda_pred=lam, out_dir=f"{tiny_config().out_dir}-{lam}"), progress=False)
        shares[lam] = [r["grad_share"] for r in trainer.fit()]
    assert len(shares[1e-3]) == 2 and all(s > 0 for s in shares[1e-3])
    assert shares[0.0] == [0.0, 0.0]


def test_warm_up_trains_translators_only_then_joint_steps_follow(tiny_config):
    trainer = Trainer(tiny_config(translator_warmup_steps=3, epochs=1), progress=False)
    trainer._prepare()
    p_before = [p.clone() for p in trainer.nets["P"].parameters()]
    g_before = [p.clone() for p in trainer.nets["G"]["mri"].parameters()]
    trainer.warm_up()
    assert trainer.translator_steps == 3
    assert all(torch.equal(a, b) for a, b in zip(p_before, trainer.nets["P"].parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(g_before, trainer.nets["G"]["mri"].parameters()))
    trainer.fit()
    assert trainer.translator_steps == 3 and len(trainer.history) == 1  # fit does not warm up twice


def test_translator_init_shares_a_warm_up_and_rejects_another_architecture(tiny_config, tmp_path):
    from duiit_fast.errors import DuiitConfigError
    source = Trainer(tiny_config(translator_warmup_steps=2, out_dir=str(tmp_path / "w")), progress=False)
    source._prepare()
    source.warm_up(tmp_path / "w" / "checkpoint.pt")
    run = Trainer(tiny_config(translator_warmup_steps=2, translator_init=str(tmp_path / "w" / "checkpoint.pt")),
                  progress=False)
    run._prepare()
    run.warm_up()
    assert run.translator_steps == 2
    for a, b in zip(source.nets["G"]["mri"].parameters(), run.nets["G"]["mri"].parameters()):
        assert torch.equal(a, b)
    other = Trainer(tiny_config(ngf=8, translator_warmup_steps=2,
                                translator_init=str(tmp_path / "w" / "checkpoint.pt")), progress=False)
    other._prepare()
    with pytest.raises(DuiitConfigError, match="another ngf"):
        other.warm_up()


def test_ct_reader_feedback_takes_g_gradient_from_the_reader_not_p(tiny_config):
    trainer = Trainer(tiny_config(pred_feedback="ct_reader"), progress=False)
    x, r_x, sources = _batch(trainer)
    from duiit_fast.eval.label_cues import OnScale
    reader = OnScale(trainer.readers["feedback"], trainer.age_mean, trainer.age_std)
    losses = generator_predictor_loss(trainer.nets, x, r_x, sources, 10.0, 1e-3, trainer.age_std, reader)
    G = list(trainer.nets["G"]["mri"].parameters())
    from_p = torch.autograd.grad(losses.pred, G, retain_graph=True, allow_unused=True)
    assert all(g is None or float(g.abs().sum()) == 0 for g in from_p)   # P sees detached translations
    from_reader = torch.autograd.grad(losses.feedback, G, retain_graph=True, allow_unused=True)
    assert sum(float(g.abs().sum()) for g in from_reader if g is not None) > 0
    assert not any(p.requires_grad for p in trainer.readers["feedback"].parameters())
    # The feedback reader learned from real CT only; the label-cue reader also saw MRI patients as CT.
    assert set(trainer.readers) == {"cues", "feedback"}


def test_cyclegan_two_stage_freezes_translators_for_the_predictor_stage(tiny_config):
    trainer = Trainer(tiny_config("CYCLEGAN-CT-MRI", translator_warmup_steps=2), progress=False)
    trainer._prepare()
    assert trainer.translator_budget() == 2 + 2 * 2   # warm-up + the joint arm's steps
    trainer.warm_up()
    frozen = [p.clone() for p in trainer.nets["G"]["mri"].parameters()]
    trainer.fit()
    assert trainer.translator_steps == 6
    assert all(torch.equal(a, b) for a, b in zip(frozen, trainer.nets["G"]["mri"].parameters()))
    (name, translated), = trainer.extra_sets().items()
    torch.testing.assert_close(translated.images, trainer.translate(trainer.data.sources["mri"].images, "mri"))
    assert "reader_slope" in trainer.history[-1]


def test_best_epoch_on_validation_is_kept(tiny_config, tmp_path):
    trainer = Trainer(tiny_config("PURE-CT", epochs=4, decay_start_epoch=4), progress=False)
    trainer.fit()
    vals = [r["val_mse"] for r in trainer.history]
    best = min(range(4), key=vals.__getitem__)
    assert trainer.best["epoch"] == best and trainer.best["val_mse"] == vals[best]
    assert trainer.evaluate("val")["mse"] == pytest.approx(vals[best], rel=1e-5)
    loaded = Trainer.load(trainer.save(tmp_path / "m.pt"))
    assert loaded.evaluate("val")["mse"] == pytest.approx(vals[best], rel=1e-5)
    last = Trainer(tiny_config("PURE-CT", epochs=4, decay_start_epoch=4, select_on_val=False,
                               out_dir=str(tmp_path / "last")), progress=False)
    last.fit()
    assert last.evaluate("val")["mse"] == pytest.approx(vals[-1], rel=1e-5)


def test_tail_ensemble_averages_the_last_epochs_predictors_and_survives_a_reload(tiny_config, tmp_path):
    cfg = tiny_config("PURE-CT", epochs=4, decay_start_epoch=4, tail_ensemble_epochs=2, out_dir=str(tmp_path / "run"))
    trainer = Trainer(cfg, progress=False)
    trainer.fit()
    assert len(trainer.tail) == 2 and trainer.uses_tail_ensemble
    images = trainer.data.ct_val.images
    members = [trainer.predict_with_state(state, images) for state in trainer.tail]
    assert not torch.equal(members[0], members[1])   # two different epochs' predictors
    torch.testing.assert_close(trainer.predict(images), (members[0] + members[1]) / 2)
    # The last member is the last epoch's P, whose validation MSE the history recorded for that epoch.
    from duiit_fast.eval.evaluate import regression_metrics
    assert regression_metrics(members[1], trainer.data.ct_val)["mse"] == pytest.approx(
        trainer.history[-1]["val_mse"], rel=1e-5)
    # The ensemble replaces the choice of an epoch: P stays the last epoch's, not the best one's.
    torch.testing.assert_close(trainer.predict_with_state(trainer.nets["P"].state_dict(), images), members[1])
    loaded = Trainer.load(trainer.save(tmp_path / "m.pt"))
    torch.testing.assert_close(loaded.predict(images), trainer.predict(images))


def test_tail_ensemble_leaves_training_as_it_was(tiny_config, tmp_path):
    plain = Trainer(tiny_config("MIX-CT-MRI", out_dir=str(tmp_path / "a")), progress=False).fit()
    tail = Trainer(tiny_config("MIX-CT-MRI", tail_ensemble_epochs=3, out_dir=str(tmp_path / "b")), progress=False).fit()
    assert [r["loss"] for r in tail] == [r["loss"] for r in plain]
    assert [r["val_mse"] for r in tail] == [r["val_mse"] for r in plain]


def test_tail_ensemble_refuses_a_negative_count(tiny_config):
    from duiit_fast.errors import DuiitConfigError
    with pytest.raises(DuiitConfigError, match="tail_ensemble_epochs"):
        tiny_config("PURE-CT", tail_ensemble_epochs=-1).validate()


class _Oracle(torch.nn.Module):
    """Reads the age written into the image's first pixel (a reader that sees every cue)."""

    def forward(self, x):
        return x[:, 0, 0, 0] * 100.0


def test_label_cue_metrics_slope_and_error():
    ages = torch.tensor([20.0, 40.0, 60.0, 80.0])
    kept = torch.zeros(4, 1, 4, 4)
    kept[:, 0, 0, 0] = ages / 100.0
    m = label_cue_metrics(_Oracle(), kept, ages, "cpu", true_ct=kept)
    assert m["reader_slope"] == pytest.approx(1.0) and m["reader_mse"] == pytest.approx(0.0, abs=1e-8)
    assert m["pixel_l1"] == 0.0
    erased = torch.full((4, 1, 4, 4), 0.5)   # every translation the same: the cues are gone
    m = label_cue_metrics(_Oracle(), erased, ages, "cpu")
    assert m["reader_slope"] == pytest.approx(0.0) and m["reader_mse"] == pytest.approx(500.0)


def test_mix_logs_label_cues_every_epoch(tiny_config):
    history = Trainer(tiny_config(), progress=False).fit()
    for record in history:
        assert {"reader_mse", "reader_slope", "pixel_l1", "val_mse", "grad_share"} <= record.keys()
        assert math.isfinite(record["reader_slope"])


def test_gaussian_kernels_are_normalised_and_zero_width_is_the_identity():
    k = gaussian_kernels(torch.tensor([0.0, 0.5, 1.0]))
    assert k.shape == (3, 1, 5, 5)
    assert torch.allclose(k.sum(dim=(1, 2, 3)), torch.ones(3))
    assert k[0, 0, 2, 2] == pytest.approx(1.0) and k[0].sum() - k[0, 0, 2, 2] < 1e-6
    assert torch.allclose(k, k.flip(-1)) and torch.allclose(k, k.transpose(-1, -2))
    assert k[1, 0, 2, 2] > k[2, 0, 2, 2] > 0.1       # wider σ, less weight on the centre


def test_texture_augment_blurs_each_image_by_its_own_width_then_adds_its_own_noise():
    x = torch.zeros(3, 1, 9, 9)
    x[:, 0, 4, 4] = 1.0                               # an impulse: the output is each image's kernel
    out = texture_augment(x, torch.Generator().manual_seed(0), max_noise=0.0)
    sigmas = torch.rand(3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out[:, :, 2:7, 2:7], gaussian_kernels(sigmas), atol=1e-6)
    assert out.sum(dim=(1, 2, 3)).sub(1).abs().max() < 1e-5           # blurring keeps the mass
    flat = torch.zeros(64, 1, 16, 16)
    noisy = texture_augment(flat, torch.Generator().manual_seed(1), max_sigma=0.0, max_noise=0.1)
    sds = noisy.flatten(1).std(dim=1)
    assert 0.0 < sds.min() and sds.max() < 0.11 and sds.std() > 0.01   # one sd per image, within U[0, 0.1]
    same = texture_augment(flat, torch.Generator().manual_seed(1), max_sigma=0.0, max_noise=0.1)
    assert torch.equal(noisy, same)


def test_reader_augment_changes_the_trained_reader_only_when_on(tiny_config, monkeypatch):
    images, ages = torch.randn(16, 1, 16, 16), torch.linspace(20, 90, 16)
    plain = train_reader(images, ages, 3, seed=5, device="cpu")
    again = train_reader(images, ages, 3, seed=5, device="cpu", augment=False)
    augmented = train_reader(images, ages, 3, seed=5, device="cpu", augment=True)
    read = lambda r: r(images)
    assert torch.equal(read(plain), read(again))
    assert not torch.allclose(read(plain), read(augmented))
    import duiit_fast.train.trainer as trainer_module
    asked = []
    monkeypatch.setattr(trainer_module, "train_reader",
                        lambda *a, **k: asked.append(k["augment"]) or train_reader(*a, **k))
    for augment in (True, False):
        Trainer(tiny_config(reader_augment=augment), progress=False)._prepare()
    assert asked == [True, False]


def _history(*curves, slices=(10, 10)):
    """Per-epoch records from per-patient MSE curves (one curve per validation patient)."""
    return [{"val_patient_mse": list(errors), "val_patient_slices": list(slices),
             "val_mse": float(np.average(errors, weights=slices))} for errors in zip(*curves)]


def test_cross_fitted_validation_takes_the_luck_out_of_choosing_the_epoch():
    # Noisy: each patient has one lucky epoch, at different epochs. Smooth: steady at 45.
    noisy = _history([50, 30, 50], [50, 50, 30])
    smooth = _history([45, 45, 45], [45, 45, 45])
    best = lambda h: min(r["val_mse"] for r in h)
    assert best(noisy) == 40 < best(smooth) == 45            # the best epoch favours the noisy curve
    assert cross_fitted_val_mse(noisy) == 50 > cross_fitted_val_mse(smooth) == 45
    # Halves are even and odd positions; the epoch chosen on one is scored on the other, slice-weighted.
    h = _history([10, 20], [30, 5], [40, 60], slices=(1, 1, 2))   # halves {0, 2} and {1}
    # {0, 2} (weights 1, 2): MSE 30, 46.7 → epoch 0 → patient 1 scores 30; {1}: epoch 1 → {0, 2} score 46.7.
    assert cross_fitted_val_mse(h) == pytest.approx((30 * 1 + (20 + 2 * 60) / 3 * 3) / 4)
    assert cross_fitted_val_mse(h) >= best(h)
    assert cross_fitted_val_mse([{"val_mse": 1.0}]) is None
    assert cross_fitted_val_mse(_history([1, 2], slices=(3,))) is None   # one patient: no halves


def test_every_epoch_records_per_patient_validation_errors(tiny_config):
    trainer = Trainer(tiny_config(setting="PURE-CT"), progress=False)
    history = trainer.fit()
    for record in history:
        errors, counts = record["val_patient_mse"], record["val_patient_slices"]
        assert len(errors) == len(counts) == len(trainer.data.ct_val.patients)
        assert np.average(errors, weights=counts) == pytest.approx(record["val_mse"], rel=1e-5)
    assert cross_fitted_val_mse(history) >= min(r["val_mse"] for r in history) * (1 - 1e-6)


def test_age_reader_answers_in_years():
    reader = AgeReader(age_mean=50.0, age_std=10.0)
    torch.nn.init.zeros_(reader.net.head.weight)
    torch.nn.init.constant_(reader.net.head.bias, 1.5)
    assert torch.allclose(reader.eval()(torch.zeros(2, 1, 16, 16)), torch.tensor([65.0, 65.0]))


def test_predictor_weight_average_is_what_gets_evaluated(tiny_config):
    # "running": the average's BatchNorm statistics are P's (with real_ct they are re-estimated for it).
    trainer = Trainer(tiny_config("PURE-CT", predictor_ema=0.5, select_on_val=False, predictor_bn_stats="running"),
                      progress=False)
    trainer.fit()
    live, avg = trainer.nets["P"], trainer.nets["P_avg"]
    assert trainer.eval_predictor is avg
    assert not all(torch.equal(a, b) for a, b in zip(live.parameters(), avg.parameters()))
    for a, b in zip(live.buffers(), avg.buffers()):
        assert torch.equal(a, b)   # BatchNorm statistics follow the live predictor
    images = trainer.data.ct_val.images
    with torch.no_grad():
        expected = avg.eval()(images).squeeze(1) * trainer.age_std + trainer.age_mean
    torch.testing.assert_close(trainer.predict(images), expected)


def test_recalibrate_batchnorm_gives_population_statistics_and_keeps_weights():
    from duiit_fast.models.predictor import SmallRegressor, recalibrate_batchnorm
    torch.manual_seed(0)
    net = SmallRegressor(width=4)
    images = torch.randn(40, 1, 16, 16) * 3 + 2
    weights = [p.clone() for p in net.parameters()]
    net.eval()
    recalibrate_batchnorm(net, images, "cpu", batch_size=8)
    first_bn = net.features[1]
    with torch.no_grad():
        stem = net.features[0](images)              # the first BN's input over all 40 slices
    assert torch.allclose(first_bn.running_mean, stem.mean(dim=(0, 2, 3)), atol=1e-5)
    # Five equal batches: the average of per-batch unbiased variances, close to the population's.
    assert torch.allclose(first_bn.running_var, stem.var(dim=(0, 2, 3)), rtol=0.05)
    assert all(torch.equal(a, b) for a, b in zip(weights, net.parameters()))
    assert first_bn.momentum == 0.1 and not net.training


def test_bn_statistics_on_real_ct_change_evaluation_not_training(tiny_config):
    runs = {}
    for stats in ("real_ct", "training_mix", "running"):
        cfg = tiny_config(predictor_bn_stats=stats, out_dir=f"{tiny_config().out_dir}-{stats}")
        trainer = Trainer(cfg, progress=False)
        runs[stats] = (trainer, trainer.fit())
    (recal, hist_recal), (_, hist_mix), (_, hist_running) = runs["real_ct"], runs["training_mix"], runs["running"]
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("seconds", "pairs_per_s", "slices_per_s", "val_mse", "val_patient_mse")} for r in h]
    assert strip(hist_recal) == strip(hist_running) == strip(hist_mix)   # the same training trajectory
    val = lambda h: [r["val_mse"] for r in h]
    assert val(hist_recal) != val(hist_running) and val(hist_recal) != val(hist_mix) != val(hist_running)
    bn = [m for m in recal.nets["P"].modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    with torch.no_grad():
        first = recal.nets["P"].features[0](recal.data.ct_train.images)
    assert torch.allclose(bn.running_mean, first.mean(dim=(0, 2, 3)), atol=1e-4)


@pytest.mark.parametrize("n_a, n_b, dim", [(30, 20, 12), (200, 150, 12), (15, 40, 64), (3000, 2000, 5)])
def test_frechet_distance_equals_the_matrix_square_root_form_and_torchmetrics(n_a, n_b, dim):
    """The sample-space (nuclear norm) evaluation against FID as usually written: scipy's sqrtm of
    ΣaΣb, and torchmetrics' own _compute_fid — fewer or more samples than dimensions alike."""
    from scipy import linalg
    from torchmetrics.image.fid import _compute_fid
    from duiit_fast.eval.label_cues import frechet_distance
    rng = np.random.default_rng(n_a)
    a = rng.standard_normal((n_a, dim)) @ rng.standard_normal((dim, dim))
    b = 0.5 * rng.standard_normal((n_b, dim)) @ rng.standard_normal((dim, dim)) + 0.3
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    by_sqrtm = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a + cov_b - 2 * root)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    by_torchmetrics = float(_compute_fid(ta.mean(0), torch.cov(ta.T), tb.mean(0), torch.cov(tb.T)))
    assert frechet_distance(a, b) == pytest.approx(by_sqrtm, rel=1e-6)
    assert frechet_distance(a, b) == pytest.approx(by_torchmetrics, rel=1e-6)


def test_frechet_distance_and_domain_fid():
    from duiit_fast.eval.label_cues import frechet_distance
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = frechet_distance(a, a + 2.0)                       # only the means differ: 8 · 2²
    assert shifted == pytest.approx(32.0, rel=1e-6)
    assert frechet_distance(a, 3 * a) > 1.0                      # covariance differs
    # 1-d: (μa − μb)² + (σa − σb)²; for x and 3x that is (2μ)² + (2σ)² of x's sample estimates.
    one_d = rng.standard_normal((20000, 1))
    expected = 4.0 * one_d.mean() ** 2 + 4.0 * one_d.var(ddof=1)
    assert frechet_distance(one_d, 3 * one_d) == pytest.approx(expected, rel=1e-9)
    reader = AgeReader(width=4)
    real = torch.rand(150, 1, 16, 16) * 2 - 1
    same = label_cue_metrics(reader, real, torch.full((150,), 50.0), "cpu", real_ct=real)["domain_fid"]
    other = label_cue_metrics(reader, -real.flip(-1) * 0.2, torch.full((150,), 50.0), "cpu", real_ct=real)
    # An untrained reader's features are small; what matters is identical ≈ 0 < different.
    assert same == pytest.approx(0.0, abs=1e-12) and other["domain_fid"] > 1e-8


def test_joint_warm_up_trains_g_with_a_scratch_predictor_then_restarts_p(tiny_config):
    trainer = Trainer(tiny_config(translator_warmup_steps=1, joint_warmup_steps=3, epochs=1), progress=False)
    initial_p = {k: v.clone() for k, v in trainer.nets["P"].state_dict().items()}
    trainer._prepare()
    trainer.warm_up()
    g_before = [p.clone() for p in trainer.nets["G"]["mri"].parameters()]
    p_moved = []
    step = trainer._train_step

    def joint_step_watching_p(*args, **kwargs):
        parts = step(*args, **kwargs)   # P learns during the joint warm-up
        p_moved.append(any(not torch.equal(v, initial_p[k]) for k, v in trainer.nets["P"].state_dict().items()))
        return parts
    trainer._train_step = joint_step_watching_p
    trainer.joint_warm_up()
    assert trainer.joint_warmup_done == 3 and p_moved == [True, True, True]
    assert not all(torch.equal(a, b) for a, b in zip(g_before, trainer.nets["G"]["mri"].parameters()))
    # P is back where every arm's P starts, with an empty Adam: its own budget begins now.
    for k, v in trainer.nets["P"].state_dict().items():
        assert torch.equal(v, initial_p[k]), k
    assert not trainer.optimizers["pred"].state
    trainer._train_step = step
    trainer.fit()
    assert trainer.joint_warmup_done == 3 and len(trainer.history) == 1   # not warmed up twice


def test_joint_warm_up_is_duiit_only_and_lengthens_cyclegan_stage_one(tiny_config):
    pure = Trainer(tiny_config("PURE-CT", joint_warmup_steps=4), progress=False)
    pure.fit()
    assert pure.joint_warmup_done == 0
    cyclegan = Trainer(tiny_config("CYCLEGAN-CT-MRI", translator_warmup_steps=2, joint_warmup_steps=4), progress=False)
    cyclegan._prepare()
    assert cyclegan.translator_budget() == 2 + 4 + 2 * 2   # the same translator steps as DUIIT's


def test_joint_warm_up_resumes_exactly(tiny_config, tmp_path, monkeypatch):
    import duiit_fast.train.trainer as trainer_module
    monkeypatch.setattr(trainer_module, "WARMUP_CHECKPOINT_EVERY", 2)
    overrides = dict(translator_warmup_steps=1, joint_warmup_steps=5, epochs=1)
    whole = Trainer(tiny_config(out_dir=str(tmp_path / "whole"), **overrides), progress=False)
    whole.fit()
    cut = Trainer(tiny_config(out_dir=str(tmp_path / "cut"), **overrides), progress=False)
    cut._prepare()
    cut.warm_up(tmp_path / "cut" / "checkpoint.pt")
    calls = {"n": 0}
    step = cut._train_step

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt   # killed after the checkpoint at joint warm-up step 2
        return step(*a, **k)
    cut._train_step = interrupted
    with pytest.raises(KeyboardInterrupt):
        cut.joint_warm_up(tmp_path / "cut" / "checkpoint.pt")
    resumed = Trainer(tiny_config(out_dir=str(tmp_path / "cut"), **overrides), progress=False)
    resumed.fit(resume=True)
    assert resumed.joint_warmup_done == 5
    for a, b in zip(whole.nets.parameters(), resumed.nets.parameters()):
        assert torch.equal(a, b)
    assert [r["loss"] for r in whole.history] == [r["loss"] for r in resumed.history]


def test_source_calibration_is_identity_on_real_ct_and_affine_per_source():
    from duiit_fast.train.networks import SourceCalibration
    cal = SourceCalibration(("mri", "pet"))
    with torch.no_grad():
        cal.scale.copy_(torch.tensor([2.0, 3.0]))
        cal.shift.copy_(torch.tensor([0.5, -1.0]))
    pred = torch.tensor([1.0, 2.0, 1.0, 1.0, 1.0, 2.0])
    out = cal(pred, (2, 3, 1))
    assert out.tolist() == [1.0, 2.0, 2.5, 2.5, 2.5, 5.0]
    with pytest.raises(ValueError, match="do not split 6 predictions"):
        cal(pred, (2, 3))


def test_source_calibration_learns_in_every_source_setting_and_never_touches_evaluation(tiny_config):
    pure = Trainer(tiny_config("PURE-CT", source_calibration=True), progress=False)
    assert "P_cal" not in pure.nets   # nothing but CT: nothing to calibrate
    for setting in ("MIX-CT-MRI", "NAIVE-CT-MRI", "ORACLE-CT-MRI", "CYCLEGAN-CT-MRI"):
        trainer = Trainer(tiny_config(setting, source_calibration=True, translator_warmup_steps=1), progress=False)
        lrs = [g["lr"] for g in trainer.optimizers["pred"].param_groups]
        assert lrs == [trainer.cfg.lr_predictor, 10 * trainer.cfg.lr_predictor]
        trainer.fit()
        cal = trainer.nets["P_cal"]
        assert float(cal.scale.detach()) != 1.0 and float(cal.shift.detach()) != 0.0, setting   # stepped every step
        ct = trainer.data.ct_test.images[:8]
        before = trainer.predict(ct)
        with torch.no_grad():
            cal.scale.fill_(7.0)
        assert torch.equal(trainer.predict(ct), before), setting   # CT is read without it


def test_source_calibration_carries_the_discriminative_gradient_to_g(tiny_config):
    trainer = Trainer(tiny_config(source_calibration=True), progress=False)
    x, r_x, sources = _batch(trainer)
    with torch.no_grad():
        trainer.nets["P_cal"].scale.fill_(3.0)
        trainer.nets["P_cal"].shift.fill_(0.25)
    losses = generator_predictor_loss(trainer.nets, x, r_x, sources, 10.0, 1e-3, label_scale=trainer.age_std)
    with torch.no_grad():
        raw = trainer.nets["P"](torch.cat([x, losses.fakes["mri"][0]])).squeeze(1)
    n = x.shape[0]
    pred = torch.cat([raw[:n], 3.0 * raw[n:] + 0.25])
    expected = squared_error_sum(pred, torch.cat([r_x, sources["mri"].ages]), trainer.age_std)
    assert float(losses.pred) == pytest.approx(float(expected), rel=1e-4)
    G = trainer.nets["G"]["mri"]
    grads = torch.autograd.grad(losses.feedback, [*G.parameters(), trainer.nets["P_cal"].scale])
    assert all(g.abs().sum() > 0 for g in grads)


def test_source_calibration_resumes_exactly_and_restarts_with_p(tiny_config, tmp_path):
    overrides = dict(source_calibration=True, epochs=3)
    whole = Trainer(tiny_config(out_dir=str(tmp_path / "whole"), **overrides), progress=False)
    whole.fit()
    cut = Trainer(tiny_config(out_dir=str(tmp_path / "cut"), **overrides), progress=False)
    cut.cfg.epochs = 2   # stopped after two epochs, as a killed run would be
    cut.fit()
    resumed = Trainer(tiny_config(out_dir=str(tmp_path / "cut"), **overrides), progress=False)
    resumed.fit(resume=True)
    for a, b in zip(whole.nets["P_cal"].parameters(), resumed.nets["P_cal"].parameters()):
        assert torch.equal(a, b)
    resumed._restart_predictor()
    assert resumed.nets["P_cal"].scale.tolist() == [1.0] and resumed.nets["P_cal"].shift.tolist() == [0.0]


def test_label_cues_one_reader_pass_gives_the_two_pass_numbers():
    """The fast path (ages and features from one pass of the reader, real-CT features precomputed)
    is the same computation as read_ages + reader_features: the metrics agree exactly."""
    from duiit_fast.eval.label_cues import frechet_distance, read_ages, reader_features
    torch.manual_seed(0)
    reader = AgeReader(width=4, age_mean=50.0, age_std=15.0).eval()
    translated, real = torch.rand(150, 1, 16, 16) * 2 - 1, torch.rand(130, 1, 16, 16) * 2 - 1
    ages = torch.linspace(20, 90, 150)
    fast = label_cue_metrics(reader, translated, ages, "cpu", real_ct_features=reader_features(reader, real, "cpu"))
    assert fast == label_cue_metrics(reader, translated, ages, "cpu", real_ct=real)
    pred, true = read_ages(reader, translated, "cpu").double().numpy(), ages.double().numpy()
    assert fast["reader_mse"] == float(np.mean((pred - true) ** 2))
    assert fast["domain_fid"] == frechet_distance(reader_features(reader, translated, "cpu"),
                                                  reader_features(reader, real, "cpu"))


def test_diff_augment_shifts_in_air_cuts_a_half_side_square_and_passes_gradients():
    from duiit_fast.train.step import diff_augment
    torch.manual_seed(3)
    images = torch.full((16, 1, 16, 16), 0.5, requires_grad=True)
    out = diff_augment(images)
    assert out.shape == images.shape
    values = set(out.detach().unique().tolist())
    assert values <= {-1.0, 0.0, 0.5}            # kept, air shifted in, or cut out
    shifted_in = (out == -1.0).flatten(1).sum(1)
    assert shifted_in.max() <= 16 * 16 - 14 * 14  # at most 2 rows and 2 columns (1/8 of 16)
    assert (shifted_in > 0).any()
    cut = (out == 0.0).flatten(1).sum(1)
    assert cut.max() <= 8 * 8 and (cut > 0).all()  # a half-side square, clipped at the border
    out.sum().backward()
    # Each output pixel that kept the image passes a gradient of 1 to exactly one input pixel.
    assert float(images.grad.sum()) == float((out == 0.5).sum())
    torch.manual_seed(3)
    assert torch.equal(diff_augment(images.detach()), out.detach())   # the global generator: resumable


def test_translator_regularisers_are_off_by_default_and_change_only_their_terms(tiny_config):
    from duiit_fast.train.step import TranslatorRegularisers, discriminator_loss, translation_loss
    trainer = Trainer(tiny_config(), progress=False)
    x, _, sources = _batch(trainer)
    assert TranslatorRegularisers.of(trainer.cfg) == TranslatorRegularisers()

    def losses(terms):
        torch.manual_seed(0)
        with torch.no_grad():
            trans, fakes = translation_loss(trainer.nets, x, sources, 10.0, terms)
            pooled = {k: (f[0], f[1]) for k, f in fakes.items()}
            return float(trans), fakes["mri"][0], float(discriminator_loss(trainer.nets, x, sources, pooled, terms)[0])
    plain, noisy, augmented = (losses(TranslatorRegularisers(n, a)) for n, a in ((0.0, False), (0.5, False),
                                                                                (0.0, True)))
    assert torch.equal(plain[1], noisy[1]) and torch.equal(plain[1], augmented[1])   # G(source) itself
    assert noisy[0] != plain[0] and noisy[2] == plain[2]        # noise: the cycle terms only
    assert augmented[0] != plain[0] and augmented[2] != plain[2]  # DiffAugment: every critic input


def test_mind_sees_edges_not_contrast():
    from duiit_fast.train.structure import mind_descriptor, structure_loss
    torch.manual_seed(0)
    rows = torch.arange(24).view(1, 1, 24, 1).expand(2, 1, 24, 24)
    slab = torch.where((rows > 8) & (rows < 15), 0.8, -0.6).float()   # a bright band, an edge on each side
    noisy = slab + 0.02 * torch.randn_like(slab)
    mind = mind_descriptor(noisy)
    assert mind.shape == (2, 8, 24, 24) and float(mind.min()) > 0 and float(mind.amax(1).min()) == 1.0
    # The same edges in reversed contrast (T1 against CT) match exactly: only squared differences enter.
    assert float(structure_loss(-noisy, noisy)) == 0.0
    assert float((-noisy - noisy).abs().mean()) > 1.0
    # The band moved by two rows, or smeared into its surroundings, does not match.
    moved, smeared = torch.roll(noisy, 2, dims=2), torch.nn.functional.avg_pool2d(noisy, 5, 1, 2)
    assert float(structure_loss(moved, noisy)) > 0.05 and float(structure_loss(smeared, noisy)) > 0.02
    translated = moved.clone().requires_grad_(True)
    structure_loss(translated, noisy).backward()
    assert translated.grad.abs().sum() > 0 and torch.isfinite(translated.grad).all()


def test_the_structure_term_adds_mind_distances_to_the_translation_loss_only(tiny_config):
    from duiit_fast.train.step import TranslatorRegularisers, translation_loss
    from duiit_fast.train.structure import structure_loss
    trainer = Trainer(tiny_config(lambda_structure=2.0), progress=False)
    x, _, sources = _batch(trainer)
    assert TranslatorRegularisers.of(trainer.cfg) == TranslatorRegularisers(structure=2.0)
    assert TranslatorRegularisers.of(tiny_config()).structure == 0.0   # the paper's L_trans by default
    with torch.no_grad():
        plain, fakes = translation_loss(trainer.nets, x, sources, 10.0, TranslatorRegularisers())
        with_term, same = translation_loss(trainer.nets, x, sources, 10.0, TranslatorRegularisers(structure=2.0))
        fake_x, fake_y = fakes["mri"]
        expected = 2.0 * (structure_loss(fake_x, sources["mri"].images) + structure_loss(fake_y, x))
    assert torch.equal(same["mri"][0], fake_x)
    assert float(with_term - plain) == pytest.approx(float(expected), rel=1e-5)


def test_the_identity_term_adds_cyclegan_identity_distances_to_the_translation_loss(tiny_config):
    from duiit_fast import ops
    from duiit_fast.errors import DuiitConfigError
    from duiit_fast.train.step import TranslatorRegularisers, translation_loss
    trainer = Trainer(tiny_config(lambda_identity=0.5), progress=False)
    x, _, sources = _batch(trainer)
    assert TranslatorRegularisers.of(trainer.cfg).identity == 0.5
    assert TranslatorRegularisers.of(tiny_config()).identity == 0.0   # the paper's L_trans by default
    G, F, y = trainer.nets["G"]["mri"], trainer.nets["F"]["mri"], sources["mri"].images
    with torch.no_grad():
        plain, _ = translation_loss(trainer.nets, x, sources, 10.0, TranslatorRegularisers())
        with_term, _ = translation_loss(trainer.nets, x, sources, 10.0, TranslatorRegularisers(identity=0.5))
        expected = 10.0 * 0.5 * (ops.l1_loss(G(x), x) + ops.l1_loss(F(y), y))
    assert float(expected) > 0.01
    assert float(with_term - plain) == pytest.approx(float(expected), rel=1e-5)
    # Gradient reaches G through G(CT) even where no source image passes: the term is G's alone.
    G.zero_grad()
    translation_loss(trainer.nets, x, sources, 10.0, TranslatorRegularisers(identity=0.5))[0].backward()
    with_grad = [p.grad.clone() for p in G.parameters()]
    G.zero_grad()
    translation_loss(trainer.nets, x, sources, 10.0, TranslatorRegularisers())[0].backward()
    assert any(not torch.allclose(a, p.grad) for a, p in zip(with_grad, G.parameters()))
    with pytest.raises(DuiitConfigError, match="lambda_identity"):
        tiny_config(lambda_identity=-0.5).validate()


def test_a_warm_up_trained_without_the_identity_term_is_refused(tiny_config, tmp_path):
    from duiit_fast.errors import DuiitConfigError
    source = Trainer(tiny_config(out_dir=str(tmp_path / "w"), translator_warmup_steps=2), progress=False)
    source._prepare()
    source.warm_up(tmp_path / "warm.pt")
    other = Trainer(tiny_config(translator_warmup_steps=2, lambda_identity=0.5,
                                translator_init=str(tmp_path / "warm.pt")), progress=False)
    other._prepare()
    with pytest.raises(DuiitConfigError, match="lambda_identity"):
        other.warm_up()
    trained = Trainer(tiny_config(translator_warmup_steps=2, lambda_identity=0.5, out_dir=str(tmp_path / "i")),
                      progress=False)
    assert len(trained.fit()) == 2 and all(math.isfinite(r["loss"]) for r in trained.history)

def test_translator_regularisers_train_and_guard_a_shared_warm_up(tiny_config, tmp_path):
    from duiit_fast.errors import DuiitConfigError
    cfg = dict(cycle_noise=0.1, critic_augment=True, translator_warmup_steps=2)
    source = Trainer(tiny_config(out_dir=str(tmp_path / "w"), **cfg), progress=False)
    source._prepare()
    source.warm_up(tmp_path / "warm.pt")
    assert len(source.fit()) == 2 and all(math.isfinite(r["loss"]) for r in source.history)
    plain = Trainer(tiny_config(translator_warmup_steps=2, translator_init=str(tmp_path / "warm.pt")),
                    progress=False)
    plain._prepare()
    with pytest.raises(DuiitConfigError, match="cycle_noise, critic_augment"):
        plain.warm_up()
    with pytest.raises(DuiitConfigError, match="cycle_noise"):
        tiny_config(cycle_noise=-0.1).validate()
    with pytest.raises(DuiitConfigError, match="lambda_structure"):
        tiny_config(lambda_structure=-1.0).validate()
    structured = Trainer(tiny_config(translator_warmup_steps=2, lambda_structure=1.0,
                                     translator_init=str(tmp_path / "warm.pt"), cycle_noise=0.1, critic_augment=True),
                         progress=False)
    structured._prepare()
    with pytest.raises(DuiitConfigError, match="lambda_structure"):
        structured.warm_up()   # a warm-up trained without the term is not this run's


def test_unet_translators_train_and_are_named_in_the_config(tiny_config):
    from duiit_fast.errors import DuiitConfigError
    from duiit_fast.models import UnetGenerator
    trainer = Trainer(tiny_config(generator="unet"), progress=False)
    assert all(isinstance(trainer.nets[k]["mri"], UnetGenerator) for k in ("G", "F"))
    history = trainer.fit()
    assert len(history) == 2 and all(math.isfinite(r["trans"]) for r in history)
    with pytest.raises(DuiitConfigError, match="generator"):
        tiny_config(generator="vit").validate()


def test_predictor_ct_epochs_keep_source_labels_from_p_until_the_joint_epochs(tiny_config, tmp_path):
    """In DUIIT's first predictor_ct_epochs P learns from real CT alone and G translator-only, so
    nothing trained then depends on the source labels; from the joint epochs on, P reads them."""
    import dataclasses
    from duiit_fast.errors import DuiitConfigError
    from duiit_fast.train.data import load_training_data

    def per_epoch_weights(ct_epochs, label_shift):
        cfg = tiny_config(predictor_ct_epochs=ct_epochs, epochs=2, label_cues=False,
                          out_dir=str(tmp_path / f"e{ct_epochs}-s{label_shift}"))
        data = load_training_data(cfg)
        mri = data.sources["mri"]
        data.sources["mri"] = dataclasses.replace(mri, ages=mri.ages + label_shift)
        trainer = Trainer(cfg, data=data, progress=False)
        snapshots, train_epoch = [], trainer._train_epoch

        def recording(steps):
            record = train_epoch(steps)
            snapshots.append([p.detach().clone() for p in trainer.nets.parameters()])
            return record
        trainer._train_epoch = recording
        history = trainer.fit()
        assert all(math.isfinite(r["pred"]) for r in history)
        gen_steps = max(int(s["step"]) for s in trainer.optimizers["gen"].state.values())
        return snapshots, gen_steps

    def same(a, b):
        return all(torch.equal(x, y) for x, y in zip(a, b))

    (ct0, ct1), gen_steps = per_epoch_weights(1, 0.0)
    (shifted0, shifted1), _ = per_epoch_weights(1, 25.0)
    assert same(ct0, shifted0) and not same(ct1, shifted1)
    (joint0, _), joint_gen_steps = per_epoch_weights(0, 0.0)
    (joint_shifted0, _), _ = per_epoch_weights(0, 25.0)
    assert not same(joint0, joint_shifted0)          # the paper's joint step reads them from the first epoch
    assert gen_steps == joint_gen_steps == 2 * 2     # the translators' budget is unchanged
    with pytest.raises(DuiitConfigError, match="predictor_ct_epochs"):
        tiny_config(predictor_ct_epochs=2, epochs=2).validate()


def test_predictor_ct_epochs_give_p_the_joint_steps_loss_scale(tiny_config):
    """P's CT-only step minimises λ·Σ real-CT errors in years², the joint step's real-CT term, so its
    Adam moments carry into the joint epochs at the scale they will meet there. (Without λ the CT-only
    gradients were 1/λ = 1000× the joint ones, and Adam's second moment, decaying at β2 = 0.999, froze P
    for the joint epochs: its validation MSE moved by a few years² over 18 of them.)"""
    trainer = Trainer(tiny_config(predictor_ct_epochs=1, epochs=2, label_cues=False), progress=False)
    trainer._prepare()
    P = trainer.nets["P"]
    before = {k: v.clone() for k, v in P.state_dict().items()}
    seen = {}
    step = trainer.optimizers["pred"].step

    def recording_step(*a, **k):
        seen["grads"] = [p.grad.detach().clone() for p in P.parameters()]
        return step(*a, **k)
    trainer.optimizers["pred"].step = recording_step
    x, r_x = trainer._batch(trainer.data.ct_train, "ct")
    trainer._ct_only_step(x, r_x)
    P.load_state_dict(before)
    P.zero_grad(set_to_none=True)
    P.train()
    expected = torch.autograd.grad(
        trainer.cfg.lambda_pred * squared_error_sum(P(x).squeeze(1), r_x, trainer.age_std), list(P.parameters()))
    for got, want in zip(seen["grads"], expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-10)


def test_mixed_chunks_hold_every_group_one_to_one_and_leave_one_group_as_it_was():
    from duiit_fast.models.predictor import mixed_chunks
    ct, mri = torch.zeros(40, 1, 4, 4), torch.ones(100, 1, 4, 4)
    chunks = mixed_chunks([ct, mri], batch_size=16)
    assert [len(c) for c in chunks] == [16] * 5             # 40 of each group: the smaller group sets the count
    assert all(c.mean().item() == 0.5 for c in chunks)      # 8 CT and 8 MRI slices in every chunk
    one = torch.arange(40.0).view(40, 1, 1, 1)
    assert torch.equal(torch.cat(mixed_chunks([one], batch_size=8)), one)   # real_ct's slices, in order


@pytest.mark.parametrize("setting", ["NAIVE-CT-MRI", "MIX-CT-MRI"])
def test_training_mix_statistics_come_from_what_p_trains_on(tiny_config, setting):
    from duiit_fast.eval.label_cues import evenly_spaced
    from duiit_fast.models.predictor import mixed_chunks
    trainer = Trainer(tiny_config(setting, predictor_bn_stats="training_mix", epochs=1, decay_start_epoch=0),
                      progress=False)
    trainer.fit()
    ct, source = trainer.data.ct_train.images, trainer.data.sources["mri"].images
    groups = trainer._batchnorm_groups()
    assert len(groups) == 2 and torch.equal(groups[0], ct)
    if setting == "NAIVE-CT-MRI":
        assert torch.equal(groups[1], source)               # the raw slices NAIVE's batches hold
    else:                                                   # G's translations of a CT-sized subset
        picked = source[evenly_spaced(len(source), min(len(source), len(ct)))]
        assert torch.equal(groups[1], trainer.translate(picked, "mri"))
    P = trainer.nets["P"]
    bn = [m for m in P.modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    with torch.no_grad():
        stem = lambda images: P.features[0](images).mean(dim=(0, 2, 3))
        mixed, ct_only = stem(torch.cat(mixed_chunks(groups))), stem(ct)
    # The one epoch's recalibration is the state evaluated; its mean is the 1:1 mix's, not real CT's.
    assert (bn.running_mean - mixed).abs().max() < 0.05 * (mixed - ct_only).abs().max()


def test_by_setting_statistics_are_the_settings_choice_in_the_trainer(tiny_config):
    # NAIVE chose training_mix on validation, the two-stage CycleGAN real_ct (config.BN_STATS_BY_SETTING).
    naive = Trainer(tiny_config("NAIVE-CT-MRI", predictor_bn_stats="by_setting"), progress=False)
    naive._prepare()
    groups = naive._batchnorm_groups()
    assert len(groups) == 2 and torch.equal(groups[1], naive.data.sources["mri"].images)
    cyclegan = Trainer(tiny_config("CYCLEGAN-CT-MRI", predictor_bn_stats="by_setting"), progress=False)
    cyclegan._prepare()
    assert [g.shape for g in cyclegan._batchnorm_groups()] == [cyclegan.data.ct_train.images.shape]
