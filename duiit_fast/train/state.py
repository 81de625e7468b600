"""What a checkpoint holds of a Trainer, and how a Trainer comes back from it.

The file format (checksummed, tensors and plain data only, written atomically) is checkpoint.py's;
this module is the one place that knows which parts of a run are persisted: the configuration,
progress (epoch, warm-up, joint warm-up and pretraining steps, history, the best epoch on validation), the
networks, readers, optimisers, schedules and image pools, and where the data order stands. Under
torch.distributed rank 0 writes every rank's own part (RANK_LOCAL_KEYS) too.
"""
from __future__ import annotations

import dataclasses

import torch

from ..config import TrainConfig, leaf_fields
from ..errors import DuiitConfigError, DuiitError
from .checkpoint import json_roundtrip, reader_from_state
from .schema import RESTORE_ERRORS, one_line
from .distributed import gather_to_all

RANK_LOCAL_KEYS = ("pools", "pool_rng", "samplers", "loaders", "rng")   # differ per rank under DDP
# Resuming needs the configuration the checkpoint was trained with; only the length of the run
# and where/how it executes may change.
MAY_CHANGE_ON_RESUME = {"epochs", "decay_start_epoch", "out_dir", "num_threads", "device", "backend", "loader",
                        "fast.compile", "fast.compile_regions", "fast.fused_optimizer", "cache_dir", "on_bad_file",
                        "translator_init", "reader_path", "ct", "mri", "pet", "log_every", "pictures"}


def capture(trainer) -> dict:
    """The trainer's complete state; a collective under torch.distributed (every rank calls it)."""
    t = trainer
    state = {
        "config": t.cfg.to_dict(), "epoch": t.epoch, "history": t.history,
        "translator_steps": t.translator_steps, "pretrain_steps": t.pretrain_steps, "best": t.best,
        "fast_path": None if t.fast is None else dataclasses.asdict(t.fast),
        "age_mean": t.age_mean, "age_std": t.age_std,
        "nets": {k: v.state_dict() for k, v in t.nets.items()},
        "readers": {k: r.state_dict() for k, r in t.readers.items()},
        "optimizers": {k: v.state_dict() for k, v in t.optimizers.items()},
        "schedulers": {k: v.state_dict() for k, v in t.schedulers.items()},
        "pools": {side: {k: p.state_dict() for k, p in pools.items()} for side, pools in t.pools.items()},
        "pool_rng": {side: {k: p.generator.get_state() for k, p in pools.items()} for side, pools in t.pools.items()},
        "samplers": {k: s.state_dict() for k, s in t.samplers.items()},
        "loaders": dict(t._loader_states),
        "rng": {"generator": t.generator.get_state(), "torch": torch.get_rng_state()},
    }
    if t.world.distributed:
        # Where each rank is in its shard, its pools and its random streams: rank 0 writes them all.
        local = {k: state[k] for k in RANK_LOCAL_KEYS}
        local["aug_rng"] = t.aug_generator.get_state()
        state["ranks"] = gather_to_all(local, t.world)
        state["world_size"] = t.world.size
    return state


def take_folder(t, folder, resume: bool, overwrite: bool) -> None:
    """Before trainer `t` trains in `folder`: with resume, its checkpoint restored (checked first);
    without, a folder already holding another run refused unless overwrite, which marks it until
    the new run's first checkpoint replaces the old one."""
    from .checkpoint import CHECKPOINT_NAME, read_checkpoint
    from .schema import check_run_checkpoint
    ckpt = folder.checkpoint
    if resume:
        folder.refuse_interrupted_overwrite()
        if not ckpt.exists():
            raise DuiitError(f"{t.cfg.out_dir}: nothing to resume (no {CHECKPOINT_NAME}); "
                             "drop --resume to start a new run")
        state = read_checkpoint(ckpt)
        check_run_checkpoint(state, ckpt)
        check_resumable(t.cfg, t.world.size, state, ckpt)
        restore_checked(t, state, ckpt)
    elif ckpt.exists() and t._trained_in != folder.path.resolve():   # not this trainer's own earlier fit()
        if not overwrite:
            raise DuiitError(f"{t.cfg.out_dir} already holds a run ({CHECKPOINT_NAME}); use --resume "
                             "to continue it or --overwrite to replace it")
        if t.world.is_main:
            folder.mark_overwrite()
    t._trained_in = folder.path.resolve()   # a further fit() of this trainer continues its own run
    t._folder = folder


def check_resumable(cfg: TrainConfig, world_size: int, state: dict, path) -> None:
    """A one-line error unless `state` can be continued by a run of `cfg` on `world_size` ranks."""
    saved_world = state.get("world_size", 1)
    if saved_world != world_size:
        raise DuiitConfigError(f"{path}: written by {saved_world} process(es); resume it with as many "
                               f"(--nproc {saved_world}), not {world_size}: each rank's place in its "
                               "shard of the data is in the checkpoint")
    theirs = leaf_fields(TrainConfig.from_dict(state["config"]).to_dict())
    ours = leaf_fields(json_roundtrip(cfg.to_dict()))
    differ = sorted(k for k in ours if k not in MAY_CHANGE_ON_RESUME and json_roundtrip(theirs.get(k)) != ours[k])
    if differ:
        first = differ[0]
        raise DuiitConfigError(f"{path}: cannot resume with another configuration: {first} was "
                               f"{theirs.get(first)!r}, now {ours[first]!r}"
                               + (f" (and {len(differ) - 1} more field(s))" if len(differ) > 1 else ""))


def load_optimizer(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Adam's saved param_groups carry the fused/foreach flags of the run that saved them: this
    run's own choice is put back after loading."""
    flags = [{k: g.get(k) for k in ("fused", "foreach")} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for g, f in zip(optimizer.param_groups, flags):
        g.update(f)


def load_pools(pools: dict, state: dict, device) -> None:
    for side, by_source in pools.items():
        for k, pool in by_source.items():
            pool.load_state_dict(state["pools"][side][k], device)
            pool.generator.set_state(state["pool_rng"][side][k])


def load_schedule(scheduler, state: dict) -> None:
    scheduler.load_state_dict(state)
    # The coming epoch's learning rate from this run's schedule: a run extended beyond its
    # checkpoint's epochs continues on the new schedule, not at the old one's final 0.
    for group, base, factor in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * factor(scheduler.last_epoch)


def restore(trainer, state: dict) -> None:
    """Put `state` back into the trainer (for training on, or for inference)."""
    t = trainer
    if t.world.distributed and "ranks" in state:
        state = {**state, **state["ranks"][t.world.rank]}   # this rank's shard position and streams
        t.aug_generator.set_state(state["aug_rng"])
    t.epoch, t.history = state["epoch"], list(state["history"])
    t.restored_epoch = t.epoch   # where a resumed run took up (the CLI says when nothing was left)
    t.flops_per_step = next((r["flops_per_step"] for r in reversed(t.history) if "flops_per_step" in r), None)
    t.translator_steps, t.best = state.get("translator_steps", 0), state.get("best")
    t.pretrain_steps = state.get("pretrain_steps", 0)
    # "tail" and "joint_warmup_done" of older checkpoints: empty and 0 wherever the configuration
    # passed (the knobs that filled them are removed; validation.REMOVED_KNOBS).
    t.age_mean, t.age_std = state["age_mean"], state["age_std"]
    for k, v in state["nets"].items():
        t.nets[k].load_state_dict(v)
    for k, v in state.get("readers", {}).items():
        t.readers[k] = reader_from_state(v, t.device)
    for k, v in state["optimizers"].items():
        load_optimizer(t.optimizers[k], v)
    for k, v in state["schedulers"].items():
        load_schedule(t.schedulers[k], v)
    load_pools(t.pools, state, t.device)
    # Samplers need the training data: they are rebuilt when training continues (Trainer._prepare),
    # so that a model loaded for inference never touches its training folders.
    t._sampler_states = state["samplers"]
    t._loader_states = dict(state.get("loaders", {}))
    t.generator.set_state(state["rng"]["generator"])
    torch.set_rng_state(state["rng"]["torch"])


def restore_checked(trainer, state: dict, path) -> None:
    """run_state.restore, with anything the schema did not cover reported in one line."""
    try:
        restore(trainer, state)
    except RESTORE_ERRORS as exc:
        raise DuiitError(f"{path}: cannot be restored ({one_line(exc)})") from None
