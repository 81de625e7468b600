"""Where a run's training batches come from: one sampler per set (real CT, each sampled source,
each predictor-only extra set) drawing from the run's generator in a fixed order, the memory engine
or a native-resolution loader (DALI / torch) per set, and the extra sets of the predictor-only
settings (its method's declarations). Functions of a Trainer `t`; the order of draws is the recorded
runs' and must not change."""
from __future__ import annotations

import math
import time

import torch

from ..data.pipeline import Augment, BatchSampler, MemoryEngine


def augment_spec(cfg) -> Augment:
    return Augment(flip=cfg.augment.flip, crop_min=cfg.augment.crop_min, shift=cfg.augment.shift)


def init_samplers(t) -> None:
    cfg, data, method = t.cfg, t.data, t.method
    shard = (t.world.rank, t.world.size)   # rank r takes every w-th index of each permutation
    pair_batch = method.pair_batch_size(cfg)   # real CT and sources, as pairs
    t.samplers = {"ct": BatchSampler(len(data.ct_train), pair_batch, t.generator, *shard)}
    for k in method.sampled_sources(cfg):
        t.samplers[k] = BatchSampler(len(data.sources[k]), pair_batch, t.generator, *shard)
    for k, n in method.extra_sizes(t).items():
        t.samplers[f"extra:{k}"] = BatchSampler(n, t.batch_size, t.generator, *shard)
    t.engines = {name: MemoryEngine(sampler, augment_spec(t.cfg), t.aug_generator, t.device)
                 for name, sampler in t.samplers.items()}
    if cfg.loader != "memory":
        init_loaders(t, t.batch_size)


def init_loaders(t, batch_size: int) -> None:
    """Per-batch resizing from native resolution (DALI or torch), sharded by rank under
    torch.distributed. A resumed run continues each loader after its last consumed batch."""
    from ..data.loaders import SliceLoader
    cfg = t.cfg
    rank, world = t.world.rank, t.world.size
    method = t.method
    sets = {"ct": t.data.ct_train, **{k: t.data.sources[k] for k in method.sampled_sources(cfg)},
            **method.native_sets(t)}
    augment = augment_spec(t.cfg)
    t.loaders = {
        name: SliceLoader(s.native, s.ages, cfg.image_size, batch_size, augment, seed=cfg.seed + 7 * i,
                          backend=cfg.loader, device=str(t.device), rank=rank, world_size=world)
        for i, (name, s) in enumerate(sets.items())}
    for name, state in t._loader_states.items():
        if name in t.loaders and state is not None:
            t.loaders[name].load_state_dict(state)
    t._loader_iters = {name: iter(loader) for name, loader in t.loaders.items()}

def close_loaders(t) -> None:
    """Stop the loaders' prefetch threads; fit() calls it when training ends."""
    for loader in t.loaders.values():
        loader.close()
    t.loaders, t._loader_iters = {}, {}


def steps_per_epoch(t) -> int:
    if t.cfg.steps_per_epoch:
        return t.cfg.steps_per_epoch
    sizes = [len(t.data.ct_train)] + [len(s) for s in t.data.sources.values()]
    # One pass over the largest set per epoch at any number of ranks (each takes its shard), so
    # the per-epoch learning-rate schedule means the same under torch.distributed.
    return max(1, math.ceil(max(sizes) / (t.batch_size * t.world.size)))


def draw(t, slices, name: str):
    """One batch (images, scaled ages) of `slices` from the sampler (or loader) `name`."""
    start = time.perf_counter()
    if name in t.loaders:
        batch = next(t._loader_iters[name])  # made ahead by the loader's prefetch thread
        t._loader_states[name] = batch.state
    else:
        batch = t.engines[name].next_batch(slices.images, slices.ages)
    t._slices_drawn += len(batch.ages)
    ages = (batch.ages - t.age_mean) / t.age_std   # ages are scaled here, for every engine
    images = layout(t, batch.images)
    t.data_seconds += time.perf_counter() - start
    return images, ages


def layout(t, images: torch.Tensor) -> torch.Tensor:
    """The run's memory format (channels_last where its fast path chose it)."""
    if t._device_fast["channels_last"]:
        return images.contiguous(memory_format=torch.channels_last)
    return images
