"""The networks of a run as one module, with their optimisers and learning-rate schedules.

    P        the predictor (every setting); P_src (MTL's source head), D_dom (DANN's domain
             critic), P_avg (a running average of P, predictor_ema > 0), P_cal (per-source output
             calibration, source_calibration) where the setting has them
    G[k]     source k → CT translator        F[k]  CT → source k
    D_s[k]   source-k critic                 D_t   the shared CT critic

Three Adam optimisers: "pred" (P and its baseline heads, lr_predictor), "gen" (G and F,
lr_translator) and "disc" (the critics, lr_translator), each with the paper's linear decay.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..models import PatchDiscriminator, build_generator, build_predictor
from .baselines import build_extra_nets
from .schedule import linear_decay

PREDICTOR_PARTS = ("P", "P_src", "D_dom")   # what the "pred" optimiser steps (P_cal: its own group)
CALIBRATED_KINDS = ("MIX", "CYCLEGAN", "ORACLE", "NAIVE")   # P sees source-derived batches beside CT
# P_cal's scale must be able to move by ~1 within a few hundred steps; Adam moves a parameter by
# about lr per step, so at lr_predictor (1e-3, decaying) it could not.
CALIBRATION_LR_FACTOR = 10.0


class SourceCalibration(nn.Module):
    """scale_k·P(·) + shift_k on the predictions for source k's slices, identity on real CT.
    P's loss sums over real and source-derived slices (eq. 2); where the source slices carry the
    label's cues more weakly than real CT (translations that blur them), one shared output would be
    pulled toward the mean on CT too. The affine absorbs that per source, while P's features still
    learn from every slice and the discriminative gradient still reaches G through it."""

    def __init__(self, sources):
        super().__init__()
        self.sources = tuple(sources)
        self.scale = nn.Parameter(torch.ones(len(self.sources)))
        self.shift = nn.Parameter(torch.zeros(len(self.sources)))

    def forward(self, pred: torch.Tensor, counts) -> torch.Tensor:
        """pred: (N,) over [real CT, source 0, source 1, ...] in that order; counts: their sizes."""
        n_real, *n_sources = counts
        if len(n_sources) != len(self.sources) or n_real + sum(n_sources) != pred.shape[0]:
            raise ValueError(f"counts {tuple(counts)} do not split {pred.shape[0]} predictions into real CT "
                             f"and the sources {self.sources}")
        scale = torch.cat([self.scale.new_ones(n_real)] + [self.scale[i].expand(n) for i, n in enumerate(n_sources)])
        shift = torch.cat([self.shift.new_zeros(n_real)] + [self.shift[i].expand(n) for i, n in enumerate(n_sources)])
        return pred * scale + shift


def predictor_outputs(nets, images: torch.Tensor, counts) -> torch.Tensor:
    """P on a batch laid out as [real CT, source 0, ...] (sizes `counts`), through P_cal where the
    run has one: what P's loss is computed on in every step. A P built with separate domain
    BatchNorm (config predictor_bn_domains) is called once per group while training."""
    predictor = nets["P"]
    if getattr(predictor, "separate_domain_bn", False) and predictor.training and len(counts) > 1:
        pred = torch.cat([predictor(group) for group in images.split(list(counts))]).squeeze(1)
    else:
        pred = predictor(images).squeeze(1)
    return nets["P_cal"](pred, counts) if "P_cal" in nets else pred
TRANSLATORS, CRITICS = ("G", "F"), ("D_t", "D_s")   # this order: checkpoints' optimiser states index it


class Networks(nn.ModuleDict):
    """A ModuleDict keyed as above: one .to(), .train(), state per name (the checkpoint's layout)."""

    @classmethod
    def build(cls, cfg, device, build_p=build_predictor) -> "Networks":
        nets = cls({"P": build_p(cfg.predictor).to(device)})
        # A plain attribute, not a parameter or buffer: checkpoints keep their layout.
        nets["P"].separate_domain_bn = cfg.predictor_bn_domains == "separate"
        nets.update(build_extra_nets(cfg.kind, nets["P"], device))   # MTL's source head, DANN's domain critic
        if cfg.predictor_ema:
            # Polyak average of P's weights: what evaluate/predict use (every setting alike).
            nets["P_avg"] = copy.deepcopy(nets["P"]).requires_grad_(False)
        if cfg.source_calibration and cfg.kind in CALIBRATED_KINDS:
            nets["P_cal"] = SourceCalibration(cfg.sources).to(device)
        if cfg.has_translators:
            def generator():
                return build_generator(cfg.generator, cfg.ngf, cfg.resolved_n_blocks, cfg.image_size).to(device)

            def critic():
                return PatchDiscriminator(1, cfg.ndf, cfg.critic_layers).to(device)
            nets["G"] = nn.ModuleDict({k: generator() for k in cfg.sources})
            nets["F"] = nn.ModuleDict({k: generator() for k in cfg.sources})
            nets["D_s"] = nn.ModuleDict({k: critic() for k in cfg.sources})
            nets["D_t"] = critic()
        return nets

    def get(self, key: str, default=None):
        return self[key] if key in self else default

    def parameters_of(self, names) -> list:
        return [p for k in names if k in self for p in self[k].parameters()]

    def build_optimizers(self, cfg, fused: bool) -> tuple[dict, dict]:
        """P has its own Adam at lr_predictor. In DUIIT it steps on the gradient of the joint loss
        L_trans + λ·L_pred: Adam is invariant to a constant loss scale, so λ does not shrink P's
        steps (two optimisers on one loss = one optimiser with two parameter groups)."""
        predictor_beta1 = cfg.beta1 if cfg.predictor_beta1 is None else cfg.predictor_beta1

        def adam(params, lr, beta1=cfg.beta1):
            return torch.optim.Adam(params, lr=lr, betas=(beta1, 0.999), fused=fused or None)   # None: foreach
        groups = [{"params": self.parameters_of(PREDICTOR_PARTS)}]
        if "P_cal" in self:
            groups.append({"params": list(self["P_cal"].parameters()),
                           "lr": cfg.lr_predictor * CALIBRATION_LR_FACTOR})
        optimizers = {"pred": adam(groups, cfg.lr_predictor, predictor_beta1)}
        if cfg.has_translators:
            optimizers["gen"] = adam(self.parameters_of(TRANSLATORS), cfg.lr_translator)
            optimizers["disc"] = adam(self.parameters_of(CRITICS), cfg.lr_translator)
        schedulers = {k: linear_decay(o, cfg.epochs, cfg.decay_start_epoch) for k, o in optimizers.items()}
        return optimizers, schedulers
