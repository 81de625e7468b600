"""Data-parallel training under torch.distributed (torchrun): NCCL on CUDA, gloo on CPU.

Every rank holds the same networks and optimisers and trains on its own shard of every batch
(rank r of w takes every w-th index of each shared permutation). Before each optimiser step the
gradients of that optimiser's parameters are averaged over the ranks (one flat all-reduce per
step), so all ranks take the same step and stay identical.

Why not DistributedDataParallel's wrapper: one DUIIT step calls G_k and F_k twice each before a
single backward (translation and cycle), freezes the critics for the G step and unfreezes them
for their own, and P's optimiser steps on the joint loss — DDP's reducer expects one forward per
backward and a fixed set of parameters that require gradients. An all-reduce hooked to each
optimiser's step is the same arithmetic without those constraints (it does not overlap the
communication with the backward pass; bench/RESULTS.md counts the bytes).

Loss units: mean-reduced terms (LSGAN, L1) averaged over ranks are the global batch's mean; the
summed L_pred (eq. 2, years²) is multiplied by the world size on every rank, so its average is
the global batch's sum and λ keeps the paper's meaning at any number of ranks.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """The one writer: checkpoints, metrics, plots and evaluation happen on rank 0."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def current_world() -> World:
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return World()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_from_env(device: str, timeout_s: float) -> World:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE, MASTER_ADDR,
    ...). A collective that waits longer than timeout_s raises instead of hanging: a rank that died
    takes the job down."""
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        return current_world()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return current_world()


@contextlib.contextmanager
def leaving_world():
    """Tear the process group down when the block ends. When it completed, the ranks first meet at a
    barrier, so no rank destroys its gloo connections while a peer is still at work (rank 0 writes
    last): a rank that tore down early was twice seen aborting at exit (SIGABRT, "terminate called
    without an active exception", in CI; not reproduced on demand in 42 runs). After an error there
    is no barrier: the peer may never arrive, and the collective timeout takes the job down."""
    completed = False
    try:
        yield
        completed = True
    finally:
        if dist.is_available() and dist.is_initialized():
            if completed:
                dist.barrier()
            dist.destroy_process_group()


def average_gradients(params, world: World) -> None:
    """Replace each parameter's gradient by its mean over the ranks: one all-reduce of a flat
    buffer per dtype. Parameters without a gradient are skipped (the same ones on every rank: the
    code path is the same), so Adam skips them as in one process."""
    grads = [p.grad for p in params if p.grad is not None]
    by_dtype: dict = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    for group in by_dtype.values():
        flat = _flatten_dense_tensors(group)
        dist.all_reduce(flat)
        flat.div_(world.size)
        for g, synced in zip(group, _unflatten_dense_tensors(flat, group)):
            g.copy_(synced)


def average_gradients_before_step(optimizer: torch.optim.Optimizer, world: World):
    """Hook the gradient average in front of optimizer.step(): the training steps stay unchanged."""
    def hook(opt, args, kwargs):
        average_gradients([p for group in opt.param_groups for p in group["params"]], world)
    return optimizer.register_step_pre_hook(hook)


@torch.no_grad()
def broadcast_from_main(modules) -> None:
    """Every rank starts from rank 0's parameters and buffers (they are seeded alike; this makes
    it a guarantee, also for a rank whose files differ)."""
    tensors = [t for m in modules for t in list(m.parameters()) + list(m.buffers())]
    by_key: dict = {}
    for t in tensors:
        by_key.setdefault((t.dtype, t.device), []).append(t)
    for group in by_key.values():
        flat = _flatten_dense_tensors([t.data for t in group])
        dist.broadcast(flat, 0)
        for t, synced in zip(group, _unflatten_dense_tensors(flat, group)):
            t.data.copy_(synced)


def mean_over_ranks(values: torch.Tensor, world: World) -> torch.Tensor:
    """The ranks' mean of a tensor of logged values (one all-reduce): logs are the global batch's,
    and every rank sees the same numbers, so a divergence check fails on all ranks at once."""
    if not world.distributed:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / world.size


def gather_to_all(obj, world: World) -> list:
    """Each rank's `obj`, in rank order, on every rank (the per-rank sampling state a checkpoint keeps)."""
    if not world.distributed:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def rank_seed(seed: int, world: World, stream: int) -> int:
    """A seed for rank-local randomness (augmentation, image pools): the run's own seed on a single
    process, so a 1-process run draws exactly as before; a distinct stream per rank otherwise."""
    return seed if not world.distributed else seed + 1_000_003 * world.rank + 7919 * stream


def join_world(nets, optimizers: dict, world, seed: int) -> None:
    """Data parallelism: rank 0's weights everywhere, every optimiser averages its gradients over the
    ranks before it steps, rank-local torch randomness."""
    broadcast_from_main(nets.values())
    for optimizer in optimizers.values():
        average_gradients_before_step(optimizer, world)
    torch.manual_seed(rank_seed(seed, world, 3))
