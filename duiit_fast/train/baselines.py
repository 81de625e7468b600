"""The paper's other baselines (section 4.3) with the same predictor: TL, MTL and DANN.

TL: P is trained on the source slices and their labels, then fine-tuned on CT (same number of
steps and learning rate in both phases, as the paper's appendix A.6; a fresh Adam for the
fine-tune). MTL: one trunk, a CT head (P's own) and a source head; the loss weights the two tasks
0.95 / 0.05 (appendix A.8); the source head is discarded after training. DANN (Ganin & Lempitsky
2015): a domain classifier on P's pooled features through a gradient-reversal layer, whose
coefficient ramps 0 → 1 as 2/(1 + exp(−10 p)) − 1 over training progress p.

MTL and DANN use mean losses on standardised ages, so the prediction and domain terms are
commensurate (a sum in years² would drown DANN's adversarial gradient by ~10³).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..models.predictor import SmallRegressor

MTL_WEIGHTS = (0.95, 0.05)   # CT task, source task (paper, appendix A.8)


def embed(P: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """P's pooled features (N, F): everything but its final linear layer."""
    if isinstance(P, SmallRegressor):
        return P.features(x).mean(dim=(2, 3))
    h = P.maxpool(P.relu(P.bn1(P.conv1(x))))
    h = P.layer4(P.layer3(P.layer2(P.layer1(h))))
    return torch.flatten(P.avgpool(h), 1)


def head_of(P: nn.Module) -> nn.Linear:
    return P.head if isinstance(P, SmallRegressor) else P.fc


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coefficient: float):
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.coefficient * grad, None


def reverse_gradient(x: torch.Tensor, coefficient: float) -> torch.Tensor:
    """Identity forward; backward multiplies the gradient by −coefficient."""
    return _ReverseGradient.apply(x, coefficient)


def dann_coefficient(progress: float) -> float:
    """Ganin & Lempitsky's schedule: 0 at the start, → 1 at the end of training."""
    return 2.0 / (1.0 + math.exp(-10.0 * min(max(progress, 0.0), 1.0))) - 1.0


def source_head(P: nn.Module, device) -> nn.Module:
    """MTL's source head: a copy of the shape of P's head."""
    return nn.Linear(head_of(P).in_features, 1).to(device)


def domain_classifier(P: nn.Module, device) -> nn.Module:
    """DANN's domain classifier on P's features."""
    width = head_of(P).in_features
    return nn.Sequential(nn.Linear(width, 64), nn.ReLU(inplace=True), nn.Linear(64, 1)).to(device)


def mtl_step(nets, optimizer, x, r_x, xs, r_s, label_scale: float) -> dict:
    """One update of trunk + both heads on 0.95·MSE(CT) + 0.05·MSE(source), standardised ages."""
    P = nets["P"]
    optimizer.zero_grad(set_to_none=True)
    feats = embed(P, torch.cat([x, xs]))   # one trunk call: BatchNorm sees both modalities, as MIX
    pred_ct = head_of(P)(feats[: len(x)]).squeeze(1)
    pred_src = nets["P_src"](feats[len(x):]).squeeze(1)
    loss_ct, loss_src = F.mse_loss(pred_ct, r_x), F.mse_loss(pred_src, r_s)
    (MTL_WEIGHTS[0] * loss_ct + MTL_WEIGHTS[1] * loss_src).backward()
    optimizer.step()
    scale = label_scale * label_scale
    return {"loss": loss_ct.detach() * scale, "pred": loss_ct.detach() * scale, "source_pred": loss_src.detach() * scale}


def dann_step(nets, optimizer, x, r_x, xs, r_s, label_scale: float, coefficient: float) -> dict:
    """One update: age regression on CT and source, plus the domain classifier (CT = 1, source = 0)
    on reversed-gradient features, so the trunk learns features the classifier cannot separate."""
    P = nets["P"]
    optimizer.zero_grad(set_to_none=True)
    feats = embed(P, torch.cat([x, xs]))
    pred = head_of(P)(feats).squeeze(1)
    loss_pred = F.mse_loss(pred, torch.cat([r_x, r_s]))
    domain = nets["D_dom"](reverse_gradient(feats, coefficient)).squeeze(1)
    truth = torch.cat([torch.ones(len(x), device=x.device), torch.zeros(len(xs), device=x.device)])
    loss_domain = F.binary_cross_entropy_with_logits(domain, truth)
    (loss_pred + loss_domain).backward()
    optimizer.step()
    ct_mse = (pred[: len(x)].detach() - r_x).square().mean() * label_scale * label_scale
    return {"loss": ct_mse, "pred": ct_mse, "domain": loss_domain.detach()}
