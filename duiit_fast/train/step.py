"""One DUIIT iteration (paper eqs. 1–3) for any number of source modalities.

For each source k: G_k translates source → CT, F_k translates CT → source, D_s,k judges source
images; D_t (shared) judges CT images. The predictor P sees real CT and every translated batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import ops
from .networks import predictor_outputs
from .pool import ImagePool


@dataclass
class SourceBatch:
    images: torch.Tensor  # (B, 1, S, S) source-modality slices in [-1, 1]
    ages: torch.Tensor    # (B,) scaled ages


def set_requires_grad(modules, flag: bool) -> None:
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(flag)


@dataclass
class GeneratorLosses:
    total: torch.Tensor     # L_trans + λ·L_pred (eq. 3), what the G/F/P step minimises
    trans: torch.Tensor     # L_trans (eq. 1), summed over sources
    pred: torch.Tensor      # L_pred (eq. 2): P's summed squared error in years² (real + translated)
    feedback: torch.Tensor  # the part of L_pred whose gradient reaches G (see pred_feedback)
    fakes: dict             # source → (fake_x: G(y), fake_y: F(x))


def squared_error_sum(pred: torch.Tensor, target: torch.Tensor, label_scale: float | torch.Tensor = 1.0,
                      weights: torch.Tensor | None = None) -> torch.Tensor:
    """Σ (pred − target)² in label units. Eq. 2 is a sum over samples of l(P(·), r) with r in the
    label's units (years for age), and the paper's λ = 1e-3 multiplies that sum: P predicts
    standardised ages, so label_scale (the ages' std; a 0-d tensor in compiled steps) converts its
    errors back to years. `weights`: one per sample (default: all 1, the paper)."""
    # fp32 whatever P's output precision (bf16 under autocast): a sum over the batch in years².
    squared = (pred.float() - target.float()).square()
    return (squared if weights is None else squared * weights).sum() * (label_scale * label_scale)


def scale_gradient(t: torch.Tensor, factor: float) -> torch.Tensor:
    """t in the forward pass, exactly; the gradient flowing back through it is multiplied by
    `factor`. (t − t.detach() is an exact zero that carries t's gradient.)"""
    if factor == 1.0:
        return t
    return t.detach() + (t - t.detach()) * factor


def sample_weights(counts, source_weight: float, device) -> torch.Tensor:
    """Per-sample weights for a batch laid out [real CT, source-derived groups...]: 1 on real CT,
    source_weight on every other group."""
    return torch.cat([torch.full((n,), 1.0 if i == 0 else source_weight, device=device)
                      for i, n in enumerate(counts)])


def translation_loss(nets, x, sources: dict, lambda_cyc: float, lambda_identity: float = 0.0):
    """L_trans (eq. 1) summed over sources: LSGAN terms with real targets for both translators and
    λcyc-weighted L1 cycle terms; with lambda_identity > 0 CycleGAN's identity term too (relative to
    λcyc, as in its code). Returns the loss and each source's (fake_x, fake_y)."""
    trans = x.new_zeros(())
    fakes = {}
    for k, batch in sources.items():
        G, Fk = nets["G"][k], nets["F"][k]
        y = batch.images
        fake_x = G(y)                 # source → CT
        rec_y = Fk(fake_x)
        fake_y = Fk(x)                # CT → source
        rec_x = G(fake_y)
        # The losses themselves in fp32 (a no-op without autocast).
        trans = trans + ops.lsgan_loss(nets["D_t"](fake_x).float(), 1.0) \
            + ops.lsgan_loss(nets["D_s"][k](fake_y).float(), 1.0) \
            + lambda_cyc * (ops.l1_loss(rec_y.float(), y.float())
                            + ops.l1_loss(rec_x.float(), x.float()))
        if lambda_identity:   # G(CT) = CT and F(source) = source: two more translator passes
            trans = trans + lambda_cyc * lambda_identity * (ops.l1_loss(G(x).float(), x.float())
                                                            + ops.l1_loss(Fk(y).float(), y.float()))
        fakes[k] = (fake_x, fake_y)
    return trans, fakes


def generator_predictor_loss(nets, x, r_x, sources: dict, lambda_cyc: float, lambda_pred: float,
                             label_scale: float = 1.0, reader=None, replicas: int = 1,
                             lambda_identity: float = 0.0, source_weight: float = 1.0) -> GeneratorLosses:
    """L = L_trans + λ·L_pred (eq. 3), L_pred in label units (years²) summed over the batch.
    Under data parallelism (`replicas` ranks, gradients averaged) λ·L_pred is taken `replicas`
    times, so the average is λ times the sum over the global batch (train/distributed.py).

    reader=None is the paper: P sees real CT and translated sources and its loss on the
    translations sends the discriminative gradient into G. With a frozen `reader` (a CT predictor
    trained on real CT only, predicting ages on P's standardised scale) P learns from detached translations and G's
    discriminative gradient comes from the reader instead, so G cannot write the label as a
    private code that only the co-trained P reads.

    source_weight = w (beyond the paper, 1 in it): P learns from real CT + w·(source-derived slices),
    so a w < 1 keeps P's reading anchored on real CT, while G's discriminative gradient stays eq. 2's
    (`feedback` is the weighted sum; its gradient into G equals the unweighted one's, up to the
    slight coupling through BatchNorm's batch statistics, which is scaled by 1/w too).
    """
    trans, fakes = translation_loss(nets, x, sources, lambda_cyc, lambda_identity)
    translated = [fakes[k][0] if reader is None else fakes[k][0].detach() for k in sources]
    targets = [r_x] + [batch.ages for batch in sources.values()]
    # One predictor call over real and translated images keeps BatchNorm statistics mixed.
    counts = [x.shape[0]] + [t.shape[0] for t in translated]
    # P's share of eq. 2 weighs each source-derived slice by w; the translations enter P through a
    # gradient scale of 1/w, so what reaches G from λ·L_pred is eq. 2's unweighted gradient.
    # (w = 1: the paper; both are then identities.)
    pred = predictor_outputs(nets, torch.cat([x] + [scale_gradient(t, 1.0 / source_weight) for t in translated]),
                             counts)
    all_targets = torch.cat(targets)
    pred_loss = squared_error_sum(pred, all_targets, label_scale)   # eq. 2 in years², what is logged
    weighted = pred_loss if source_weight == 1.0 else \
        squared_error_sum(pred, all_targets, label_scale, sample_weights(counts, source_weight, pred.device))
    if reader is None:
        feedback = weighted
        total = trans + (lambda_pred * replicas) * weighted
    else:
        fake_xs = torch.cat([fakes[k][0] for k in sources])
        feedback = squared_error_sum(reader(fake_xs).squeeze(1), torch.cat(targets[1:]), label_scale)
        total = trans + (lambda_pred * replicas) * (weighted + feedback)
    return GeneratorLosses(total, trans, pred_loss, feedback, fakes)


def discriminator_loss(nets, x, sources: dict, pooled: dict):
    """D_t: 0.5·(real + mean over sources of pooled fake CT); D_s,k likewise (LSGAN, real=1, fake=0).
    `pooled` maps each source to its (fake CT, fake source) images as drawn from the image pools."""
    real_t = ops.lsgan_loss(nets["D_t"](x).float(), 1.0)
    fake_t = x.new_zeros((), dtype=torch.float32)
    loss_s = x.new_zeros((), dtype=torch.float32)
    for k, batch in sources.items():
        fake_x, fake_y = pooled[k]
        fake_t = fake_t + ops.lsgan_loss(nets["D_t"](fake_x).float(), 0.0)
        loss_s = loss_s + 0.5 * (ops.lsgan_loss(nets["D_s"][k](batch.images).float(), 1.0)
                                 + ops.lsgan_loss(nets["D_s"][k](fake_y).float(), 0.0))
    loss_t = 0.5 * (real_t + fake_t / max(len(sources), 1))
    return loss_t + loss_s, loss_t, loss_s


def query_pools(pools: dict, fakes: dict) -> dict:
    """Each source's (fake CT, fake source) as the critics see them: through the image pools
    (host-side randomness, kept out of compiled code)."""
    return {k: (pools["ct"][k].query(fake_x.detach()), pools["src"][k].query(fake_y.detach()))
            for k, (fake_x, fake_y) in fakes.items()}


def _critic_step(nets, optimizers, pools, x, sources, fakes, fns) -> dict:
    discriminators = [nets["D_t"], *nets["D_s"].values()]
    set_requires_grad(discriminators, True)
    optimizers["disc"].zero_grad(set_to_none=True)
    d_total, d_t, d_s = fns.critic_loss(x, sources, query_pools(pools, fakes))
    d_total.backward()
    optimizers["disc"].step()
    return {"d_t": d_t.detach(), "d_s": d_s.detach()}


def _freeze_critics(nets) -> None:
    set_requires_grad([nets["D_t"], *nets["D_s"].values()], False)  # the G step must not move them


def gradient_share(losses: GeneratorLosses, nets, lambda_pred: float) -> torch.Tensor:
    """‖∇_G λ·L_pred‖ / ‖∇_G L_trans‖ over every source→CT translator's parameters: how much of G's
    update the discriminative term asks for (≈0 means DUIIT has degenerated to CycleGAN)."""
    params = [p for G in nets["G"].values() for p in G.parameters()]

    def norm(loss):
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        return torch.sqrt(sum(g.square().sum() for g in grads if g is not None) + 0.0)
    return (norm(lambda_pred * losses.feedback) / norm(losses.trans).clamp_min(1e-30)).detach()


def joint_step(nets, optimizers, pools, x, r_x, sources: dict, cfg, fns, measure_share: bool = False) -> dict:
    """G/F/P update on the joint loss, then the discriminators on pooled fakes. The translators
    and P have their own Adam optimisers (lr 2e-4 and 1e-3) stepped on the same joint gradient:
    Adam is invariant to a constant loss scale, so λ in front of L_pred does not shrink P's steps.
    Returns 0-dim device tensors (no host sync here): the caller reads them once per step.
    `fns` (train/step_functions.py) holds the possibly compiled, possibly bf16 loss functions."""
    _freeze_critics(nets)
    optimizers["gen"].zero_grad(set_to_none=True)
    optimizers["pred"].zero_grad(set_to_none=True)
    # The gradient share needs a second backward through the graph: measured on the eager loss.
    losses = (fns.eager_generator_loss if measure_share else fns.generator_loss)(x, r_x, sources)
    share = gradient_share(losses, nets, cfg.lambda_pred) if measure_share else None
    losses.total.backward()
    optimizers["gen"].step()
    optimizers["pred"].step()
    parts = _critic_step(nets, optimizers, pools, x, sources, losses.fakes, fns)
    n = x.shape[0] + sum(b.images.shape[0] for b in sources.values())
    parts.update({"loss": losses.total.detach(), "trans": losses.trans.detach(),
                  "pred": losses.pred.detach() / n})   # logged per sample: MSE in years²
    if share is not None:
        parts["grad_share"] = share
    return parts


def translator_step(nets, optimizers, pools, x, sources: dict, fns) -> dict:
    """CycleGAN alone (λ = 0, no predictor): the warm-up, and stage 1 of the two-stage baseline."""
    _freeze_critics(nets)
    optimizers["gen"].zero_grad(set_to_none=True)
    trans, fakes = fns.translation_loss(x, sources)
    trans.backward()
    optimizers["gen"].step()
    return {"trans": trans.detach(), **_critic_step(nets, optimizers, pools, x, sources, fakes, fns)}


def predictor_step(optimizer, x, r_x, extra, fns, replicas: int = 1) -> dict:
    """PURE-CT, ORACLE, NAIVE and CycleGAN's stage 2: the predictor alone on real CT plus, where the
    setting has them, extra (images, ages) batches (oracle CT, raw or translated sources, one per
    source in the run's source order), in one call as in the joint step. `replicas`: as in
    generator_predictor_loss (a sum over the global batch)."""
    optimizer.zero_grad(set_to_none=True)
    images = torch.cat([x] + [e[0] for e in extra or ()])
    targets = torch.cat([r_x] + [e[1] for e in extra or ()])
    counts = tuple(len(t) for t in [r_x] + [e[1] for e in extra or ()])
    loss = fns.predictor_loss(images, targets, counts)
    (loss * replicas).backward()
    optimizer.step()
    mse = loss.detach() / len(targets)
    return {"loss": mse, "pred": mse}


def make_pools(sources, pool_size: int, seed: int, device) -> dict:
    def pool(offset):
        return ImagePool(pool_size, torch.Generator().manual_seed(seed + offset))
    return {"ct": {k: pool(2 * i + 1) for i, k in enumerate(sources)},
            "src": {k: pool(2 * i + 2) for i, k in enumerate(sources)}}
