"""One DUIIT iteration (paper eqs. 1–3) for any number of source modalities.

For each source k: G_k translates source → CT, F_k translates CT → source, D_s,k judges source
images; D_t (shared) judges CT images. The predictor P sees real CT and every translated batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from .pool import ImagePool


@dataclass
class SourceBatch:
    images: torch.Tensor  # (B, 1, S, S) source-modality slices in [-1, 1]
    ages: torch.Tensor    # (B,) scaled ages


def set_requires_grad(modules, flag: bool) -> None:
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(flag)


def generator_predictor_loss(nets, x, r_x, sources: dict, lambda_cyc: float, lambda_pred: float,
                             backend=None):
    """L = L_trans + λ·L_pred (eq. 3). Returns the total and the parts, plus each fake pair.

    L_trans (eq. 1) per source: LSGAN terms with real targets for both translators and
    λcyc-weighted L1 cycle terms. L_pred (eq. 2): MSE on real CT and on translated sources; its
    gradient flows through the translated images into G_k — the "discriminative" part of DUIIT.
    """
    trans = x.new_zeros(())
    fakes = {}
    inputs, targets = [x], [r_x]
    for k, batch in sources.items():
        G, Fk = nets["G"][k], nets["F"][k]
        y = batch.images
        fake_x = G(y)                 # source → CT
        rec_y = Fk(fake_x)
        fake_y = Fk(x)                # CT → source
        rec_x = G(fake_y)
        trans = trans + ops.lsgan_loss(nets["D_t"](fake_x), 1.0, backend) \
            + ops.lsgan_loss(nets["D_s"][k](fake_y), 1.0, backend) \
            + lambda_cyc * (ops.l1_loss(rec_y, y, backend) + ops.l1_loss(rec_x, x, backend))
        fakes[k] = (fake_x, fake_y)
        inputs.append(fake_x)
        targets.append(batch.ages)
    # One predictor call over real and translated images keeps BatchNorm statistics mixed.
    pred = nets["P"](torch.cat(inputs)).squeeze(1)
    sizes = [t.shape[0] for t in targets]
    pred_loss = sum(F.mse_loss(p, t) for p, t in zip(pred.split(sizes), targets))
    return trans + lambda_pred * pred_loss, trans, pred_loss, fakes


def discriminator_loss(nets, x, sources: dict, fakes: dict, pools: dict, backend=None):
    """D_t: 0.5·(real + mean over sources of pooled fake CT); D_s,k likewise (LSGAN, real=1, fake=0)."""
    real_t = ops.lsgan_loss(nets["D_t"](x), 1.0, backend)
    fake_t = x.new_zeros(())
    loss_s = x.new_zeros(())
    for k, batch in sources.items():
        fake_x, fake_y = fakes[k]
        fake_t = fake_t + ops.lsgan_loss(nets["D_t"](pools["ct"][k].query(fake_x.detach())), 0.0, backend)
        loss_s = loss_s + 0.5 * (ops.lsgan_loss(nets["D_s"][k](batch.images), 1.0, backend)
                                 + ops.lsgan_loss(nets["D_s"][k](pools["src"][k].query(fake_y.detach())), 0.0, backend))
    loss_t = 0.5 * (real_t + fake_t / max(len(sources), 1))
    return loss_t + loss_s, loss_t, loss_s


def joint_step(nets, optimizers, pools, x, r_x, sources: dict, cfg, backend=None) -> dict:
    """G/F/P update on the joint loss, then the discriminators on pooled fakes."""
    discriminators = [nets["D_t"], *nets["D_s"].values()]
    set_requires_grad(discriminators, False)  # the generator step must not move the critics
    optimizers["gen"].zero_grad(set_to_none=True)
    total, trans, pred, fakes = generator_predictor_loss(
        nets, x, r_x, sources, cfg.lambda_cyc, cfg.lambda_pred, backend)
    total.backward()
    optimizers["gen"].step()

    set_requires_grad(discriminators, True)
    optimizers["disc"].zero_grad(set_to_none=True)
    d_total, d_t, d_s = discriminator_loss(nets, x, sources, fakes, pools, backend)
    d_total.backward()
    optimizers["disc"].step()
    # .item() synchronises with the device; once per step is the price of a readable log.
    return {"loss": total.item(), "trans": trans.item(), "pred": pred.item(),
            "d_t": d_t.item(), "d_s": d_s.item()}


def predictor_step(predictor: nn.Module, optimizer, x, r_x) -> dict:
    """PURE-CT / ORACLE: the predictor alone on (real or oracle) CT."""
    optimizer.zero_grad(set_to_none=True)
    loss = F.mse_loss(predictor(x).squeeze(1), r_x)
    loss.backward()
    optimizer.step()
    return {"loss": loss.item(), "pred": loss.item()}


def make_pools(sources, pool_size: int, seed: int, device) -> dict:
    def pool(offset):
        return ImagePool(pool_size, torch.Generator().manual_seed(seed + offset))
    return {"ct": {k: pool(2 * i + 1) for i, k in enumerate(sources)},
            "src": {k: pool(2 * i + 2) for i, k in enumerate(sources)}}
