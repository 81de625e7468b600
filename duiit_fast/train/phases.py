"""The phases before the epochs: the CT readers (label cues, ct_reader feedback), the translator-only
warm-up (and the two-stage CycleGAN's stage 1), a shared warm-up loaded from translator_init, and
TL's pretraining on the source. Functions of a Trainer `t`, each checkpointed as it goes."""
from __future__ import annotations

import torch

from ..errors import DuiitConfigError, DuiitError
from ..eval.label_cues import train_reader
from . import state as run_state
from .checkpoint import load_reader, read_checkpoint
from .schema import RESTORE_ERRORS, check_run_checkpoint, one_line
from .step import predictor_step, translator_step

WARMUP_CHECKPOINT_EVERY = 250  # translator-only steps between checkpoints during the warm-up


def prepare_readers(t) -> None:
    """The label-cue reader (real CT train, plus the source patients rendered as CT on the
    phantom) and, for pred_feedback = "ct_reader", the feedback reader (real CT train only)."""
    cfg, data = t.cfg, t.data
    for role in t.method.reader_roles(cfg):
        if role in t.readers:
            continue
        if cfg.reader_path is not None:
            t.readers[role] = load_reader(cfg.reader_path, role, t.device)
            continue
        sets = [data.ct_train] + (list(data.sources_as_ct.values()) if role == "cues" else [])
        images, ages = torch.cat([s.images for s in sets]), torch.cat([s.ages for s in sets])
        name = "CT reader (label cues)" if role == "cues" else "CT reader (predictor feedback)"
        with t.monitor.phase(name, cfg.reader_steps):
            t.readers[role] = train_reader(images, ages, cfg.reader_steps, cfg.seed + 101, t.device,
                                           on_step=t.monitor.advance)

def warm_up(t, ckpt=None) -> None:
    """Translator-only steps (λ = 0, no predictor) up to translator_budget(); from
    translator_init when given, checkpointed every WARMUP_CHECKPOINT_EVERY steps."""
    fresh = t.translator_steps == t.epoch == t.pretrain_steps == 0
    if t.cfg.translator_init and fresh:   # used whatever the warm-up's length, never ignored
        load_translators(t, t.cfg.translator_init)
    budget = t.translator_budget()
    if t.translator_steps >= budget:
        return
    name = "translator stage 1" if t.method.frozen_during_epochs else "translator warm-up"
    with t.monitor.phase(f"{t.cfg.setting} {name}", budget, t.translator_steps):
        while t.translator_steps < budget:
            x, _ = t.draw(t.data.ct_train, "ct")
            sources = t.source_batches()
            parts = translator_step(t.nets, t.optimizers, t.pools, x, sources, t.step_functions)
            t.translator_steps += 1
            t.monitor.advance(t.read_step(parts, f"translator step {t.translator_steps}"))
            if ckpt is not None and (t.translator_steps % WARMUP_CHECKPOINT_EVERY == 0
                                     or t.translator_steps == budget):
                t.save(ckpt)

def pretrain_on_source(t, ckpt=None) -> None:
    """TL's first phase: P on the source slices and their labels for as many steps as the
    fine-tune has, then a fresh Adam for the fine-tune on CT (paper, appendix A.6)."""
    budget = t.method.pretrain_budget(t.cfg, t.steps_per_epoch)
    if t.pretrain_steps >= budget or t.epoch > 0:   # a longer resumed run does not pretrain again
        return
    (source,) = t.cfg.sources
    with t.monitor.phase(f"{t.cfg.setting} pretraining on {source}", budget, t.pretrain_steps):
        while t.pretrain_steps < budget:
            xs, r_s = t.draw(t.data.sources[source], source)
            parts = predictor_step(t.optimizers["pred"], xs, r_s, None, t.step_functions, t.world.size)
            t.pretrain_steps += 1
            t.monitor.advance(t.read_step(parts, f"pretraining step {t.pretrain_steps}"))
            if t.pretrain_steps == budget:
                t.optimizers["pred"].state.clear()   # the fine-tune starts a fresh Adam
            if ckpt is not None and (t.pretrain_steps % WARMUP_CHECKPOINT_EVERY == 0
                                     or t.pretrain_steps == budget):
                t.save(ckpt)

def load_translators(t, path) -> None:
    """Start from another run's translators, critics, their optimisers and pools (an experiment's
    shared warm-up); the predictor and the data order stay this run's own."""
    state = read_checkpoint(path)
    theirs = check_run_checkpoint(state, path)
    if "G" not in state["nets"]:
        raise DuiitConfigError(f"config translator_init: {path} holds no translators (setting {theirs.setting})")
    keys = ("sources", "ngf", "ndf", "resolved_n_blocks", "image_size", "lambda_cyc", "lr_translator", "pool_size",
            "lambda_identity", "generator")
    differ = [k for k in keys if getattr(theirs, k) != getattr(t.cfg, k)]
    if differ:
        raise DuiitConfigError(f"config translator_init: {t.cfg.translator_init} was trained with another "
                               f"{', '.join(differ)} than this run")
    try:
        for k in ("G", "F", "D_s", "D_t"):
            t.nets[k].load_state_dict(state["nets"][k])
        for k in ("gen", "disc"):
            run_state.load_optimizer(t.optimizers[k], state["optimizers"][k])
        run_state.load_pools(t.pools, state, t.device)
    except RESTORE_ERRORS as exc:
        raise DuiitError(f"config translator_init: {path}: cannot be restored ({one_line(exc)})") from None
    t.translator_steps = min(state.get("translator_steps", 0), t.translator_budget())
