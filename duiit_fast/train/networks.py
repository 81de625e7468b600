"""The networks of a run as one module, with their optimisers and learning-rate schedules.

    P        the predictor (every setting); P_src (MTL's source head), D_dom (DANN's domain
             critic) where the setting has them
    G[k]     source k → CT translator        F[k]  CT → source k
    D_s[k]   source-k critic                 D_t   the shared CT critic

Three Adam optimisers: "pred" (P and its baseline heads, lr_predictor), "gen" (G and F,
lr_translator) and "disc" (the critics, lr_translator), each with the paper's linear decay.
"""
from __future__ import annotations

import torch
from torch import nn

from ..models import PatchDiscriminator, build_generator, build_predictor
from .schedule import linear_decay

PREDICTOR_PARTS = ("P", "P_src", "D_dom")   # what the "pred" optimiser steps


def predictor_outputs(nets, images: torch.Tensor, counts) -> torch.Tensor:
    """P on a batch laid out as [real CT, source 0, ...] (sizes `counts`), in one call, so that
    BatchNorm's batch statistics mix the groups as eq. 2 reads: what P's loss is computed on."""
    return nets["P"](images).squeeze(1)


TRANSLATORS, CRITICS = ("G", "F"), ("D_t", "D_s")   # this order: checkpoints' optimiser states index it


def build_translator_nets(cfg, device) -> dict:
    """G_k, F_k and D_s,k per source and the shared CT critic D_t."""
    def generator():
        return build_generator(cfg.generator, cfg.ngf, cfg.resolved_n_blocks, cfg.image_size).to(device)

    def critic():
        return PatchDiscriminator(1, cfg.ndf).to(device)   # the paper's 70×70 PatchGAN
    return {"G": nn.ModuleDict({k: generator() for k in cfg.sources}),
            "F": nn.ModuleDict({k: generator() for k in cfg.sources}),
            "D_s": nn.ModuleDict({k: critic() for k in cfg.sources}), "D_t": critic()}


class Networks(nn.ModuleDict):
    """A ModuleDict keyed as above: one .to(), .train(), state per name (the checkpoint's layout)."""

    @classmethod
    def build(cls, cfg, device, method, build_p=build_predictor) -> "Networks":
        """`method` (train/methods/): which networks beside P its setting trains."""
        nets = cls({"P": build_p(cfg.predictor).to(device)})
        nets.update(method.extra_nets(nets["P"], device))   # MTL's source head, DANN's domain critic
        nets.update(method.translator_nets(cfg, device))
        return nets

    def get(self, key: str, default=None):
        return self[key] if key in self else default

    def parameters_of(self, names) -> list:
        return [p for k in names if k in self for p in self[k].parameters()]

    def build_optimizers(self, cfg, fused: bool) -> tuple[dict, dict]:
        """P has its own Adam at lr_predictor. In DUIIT it steps on the gradient of the joint loss
        L_trans + λ·L_pred: Adam is invariant to a constant loss scale, so λ does not shrink P's
        steps (two optimisers on one loss = one optimiser with two parameter groups)."""
        def adam(params, lr):
            return torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, 0.999), fused=fused or None)   # None: foreach
        optimizers = {"pred": adam([{"params": self.parameters_of(PREDICTOR_PARTS)}], cfg.lr_predictor)}
        if "G" in self:
            optimizers["gen"] = adam(self.parameters_of(TRANSLATORS), cfg.lr_translator)
            optimizers["disc"] = adam(self.parameters_of(CRITICS), cfg.lr_translator)
        schedulers = {k: linear_decay(o, cfg.epochs, cfg.decay_epoch) for k, o in optimizers.items()}
        return optimizers, schedulers
