"""The networks of a run as one module, with their optimisers and learning-rate schedules.

    P        the predictor (every setting); P_src (MTL's source head), D_dom (DANN's domain
             critic), P_avg (a running average of P, predictor_ema > 0) where the setting has them
    G[k]     source k → CT translator        F[k]  CT → source k
    D_s[k]   source-k critic                 D_t   the shared CT critic

Three Adam optimisers: "pred" (P and its baseline heads, lr_predictor), "gen" (G and F,
lr_translator) and "disc" (the critics, lr_translator), each with the paper's linear decay.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..models import PatchDiscriminator, ResnetGenerator, build_predictor
from .baselines import build_extra_nets
from .schedule import linear_decay

PREDICTOR_PARTS = ("P", "P_src", "D_dom")   # what the "pred" optimiser steps
TRANSLATORS, CRITICS = ("G", "F"), ("D_t", "D_s")   # this order: checkpoints' optimiser states index it


class Networks(nn.ModuleDict):
    """A ModuleDict keyed as above: one .to(), .train(), state per name (the checkpoint's layout)."""

    @classmethod
    def build(cls, cfg, device, build_p=build_predictor) -> "Networks":
        nets = cls({"P": build_p(cfg.predictor).to(device)})
        nets.update(build_extra_nets(cfg.kind, nets["P"], device))   # MTL's source head, DANN's domain critic
        if cfg.predictor_ema:
            # Polyak average of P's weights: what evaluate/predict use (every setting alike).
            nets["P_avg"] = copy.deepcopy(nets["P"]).requires_grad_(False)
        if cfg.has_translators:
            def generator():
                return ResnetGenerator(1, 1, cfg.ngf, cfg.resolved_n_blocks).to(device)

            def critic():
                return PatchDiscriminator(1, cfg.ndf, 3).to(device)
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
        betas = (cfg.beta1, 0.999)

        def adam(params, lr):
            return torch.optim.Adam(params, lr=lr, betas=betas, fused=fused or None)   # None: foreach
        optimizers = {"pred": adam(self.parameters_of(PREDICTOR_PARTS), cfg.lr_predictor)}
        if cfg.has_translators:
            optimizers["gen"] = adam(self.parameters_of(TRANSLATORS), cfg.lr_translator)
            optimizers["disc"] = adam(self.parameters_of(CRITICS), cfg.lr_translator)
        schedulers = {k: linear_decay(o, cfg.epochs, cfg.decay_start_epoch) for k, o in optimizers.items()}
        return optimizers, schedulers
