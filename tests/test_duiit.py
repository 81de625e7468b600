"""DUIIT as the paper writes it and the knobs around it: L_pred units, the gradient share, the
translator warm-up, ct_reader feedback, the two-stage CycleGAN, validation selection, label cues."""
import math

import numpy as np
import pytest
import torch

from duiit_fast import Trainer
from duiit_fast.train import evaluation
from duiit_fast.eval.evaluate import cross_fitted_val_mse
from duiit_fast.eval.label_cues import AgeReader, label_cue_metrics
from duiit_fast.train.step import SourceBatch, generator_predictor_loss, squared_error_sum


def _batch(trainer):
    trainer.prepare()
    x, r_x = trainer.draw(trainer.data.ct_train, "ct")
    return x, r_x, {k: SourceBatch(*trainer.draw(trainer.data.sources[k], k)) for k in trainer.cfg.sources}


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


def test_gradient_share_is_logged_and_vanishes_without_lambda(tiny_config):
    shares = {}
    for lam in (0.0, 1e-3):
        trainer = Trainer(tiny_config(lambda_pred=lam, out_dir=f"{tiny_config().out_dir}-{lam}"), progress=False)
        shares[lam] = [r["grad_share"] for r in trainer.fit()]
    assert len(shares[1e-3]) == 2 and all(s > 0 for s in shares[1e-3])
    assert shares[0.0] == [0.0, 0.0]


def test_warm_up_trains_translators_only_then_joint_steps_follow(tiny_config):
    trainer = Trainer(tiny_config(translator_warmup_steps=3, epochs=1), progress=False)
    trainer.prepare()
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
    source.prepare()
    source.warm_up(tmp_path / "w" / "checkpoint.pt")
    run = Trainer(tiny_config(translator_warmup_steps=2, translator_init=str(tmp_path / "w" / "checkpoint.pt")),
                  progress=False)
    run.prepare()
    run.warm_up()
    assert run.translator_steps == 2
    for a, b in zip(source.nets["G"]["mri"].parameters(), run.nets["G"]["mri"].parameters()):
        assert torch.equal(a, b)
    other = Trainer(tiny_config(ngf=8, translator_warmup_steps=2,
                                translator_init=str(tmp_path / "w" / "checkpoint.pt")), progress=False)
    other.prepare()
    with pytest.raises(DuiitConfigError, match="another ngf"):
        other.warm_up()


def test_ct_reader_feedback_takes_g_gradient_from_the_reader_not_p(tiny_config):
    trainer = Trainer(tiny_config(pred_feedback="ct_reader"), progress=False)
    x, r_x, sources = _batch(trainer)
    from duiit_fast.models.reader import OnScale
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
    trainer.prepare()
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
    timing = ("seconds", "pairs_per_s", "slices_per_s", "data_seconds", "step_seconds", "eval_seconds",
              "checkpoint_seconds", "flops_per_s", "mfu")
    strip = lambda h: [{k: v for k, v in r.items() if k not in timing + ("val_mse", "val_patient_mse")} for r in h]
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


def test_the_identity_term_adds_cyclegan_identity_distances_to_the_translation_loss(tiny_config):
    from duiit_fast import ops
    from duiit_fast.errors import DuiitConfigError
    from duiit_fast.train.step import translation_loss
    trainer = Trainer(tiny_config(lambda_identity=0.5), progress=False)
    x, _, sources = _batch(trainer)
    assert tiny_config().lambda_identity == 0.0   # the paper's L_trans by default
    G, F, y = trainer.nets["G"]["mri"], trainer.nets["F"]["mri"], sources["mri"].images
    with torch.no_grad():
        plain, _ = translation_loss(trainer.nets, x, sources, 10.0)
        with_term, _ = translation_loss(trainer.nets, x, sources, 10.0, 0.5)
        expected = 10.0 * 0.5 * (ops.l1_loss(G(x), x) + ops.l1_loss(F(y), y))
    assert float(expected) > 0.01
    assert float(with_term - plain) == pytest.approx(float(expected), rel=1e-5)
    # Gradient reaches G through G(CT) even where no source image passes: the term is G's alone.
    G.zero_grad()
    translation_loss(trainer.nets, x, sources, 10.0, 0.5)[0].backward()
    with_grad = [p.grad.clone() for p in G.parameters()]
    G.zero_grad()
    translation_loss(trainer.nets, x, sources, 10.0)[0].backward()
    assert any(not torch.allclose(a, p.grad) for a, p in zip(with_grad, G.parameters()))
    with pytest.raises(DuiitConfigError, match="lambda_identity"):
        tiny_config(lambda_identity=-0.5).validate()


def test_a_warm_up_trained_without_the_identity_term_is_refused(tiny_config, tmp_path):
    from duiit_fast.errors import DuiitConfigError
    source = Trainer(tiny_config(out_dir=str(tmp_path / "w"), translator_warmup_steps=2), progress=False)
    source.prepare()
    source.warm_up(tmp_path / "warm.pt")
    other = Trainer(tiny_config(translator_warmup_steps=2, lambda_identity=0.5,
                                translator_init=str(tmp_path / "warm.pt")), progress=False)
    other.prepare()
    with pytest.raises(DuiitConfigError, match="lambda_identity"):
        other.warm_up()
    trained = Trainer(tiny_config(translator_warmup_steps=2, lambda_identity=0.5, out_dir=str(tmp_path / "i")),
                      progress=False)
    assert len(trained.fit()) == 2 and all(math.isfinite(r["loss"]) for r in trained.history)

def test_unet_translators_train_and_are_named_in_the_config(tiny_config):
    from duiit_fast.errors import DuiitConfigError
    from duiit_fast.models import UnetGenerator
    trainer = Trainer(tiny_config(generator="unet"), progress=False)
    assert all(isinstance(trainer.nets[k]["mri"], UnetGenerator) for k in ("G", "F"))
    history = trainer.fit()
    assert len(history) == 2 and all(math.isfinite(r["trans"]) for r in history)
    with pytest.raises(DuiitConfigError, match="generator"):
        tiny_config(generator="vit").validate()


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
    groups = evaluation.batchnorm_groups(trainer)
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
    # NAIVE chose training_mix on validation, the two-stage CycleGAN real_ct (arms.BN_STATS_BY_SETTING).
    naive = Trainer(tiny_config("NAIVE-CT-MRI", predictor_bn_stats="by_setting"), progress=False)
    naive.prepare()
    groups = evaluation.batchnorm_groups(naive)
    assert len(groups) == 2 and torch.equal(groups[1], naive.data.sources["mri"].images)
    cyclegan = Trainer(tiny_config("CYCLEGAN-CT-MRI", predictor_bn_stats="by_setting"), progress=False)
    cyclegan.prepare()
    assert [g.shape for g in evaluation.batchnorm_groups(cyclegan)] == [cyclegan.data.ct_train.images.shape]
