"""Where a run's training batches come from: one sampler per set (real CT, each sampled source,
each predictor-only extra set) drawing from the run's generator in a fixed order, the memory engine
or a native-resolution loader (DALI / torch) per set, and the extra sets of the predictor-only
settings. Functions of a Trainer `t`; the order of draws is the recorded runs' and must not change."""
from __future__ import annotations

from ..data.pipeline import Augment, BatchSampler, MemoryEngine


def augment_spec(cfg) -> Augment:
    return Augment(flip=cfg.augment_flip, crop_min=cfg.augment_crop_min, shift=cfg.augment_shift)


def init_samplers(t) -> None:
    cfg, data = t.cfg, t.data
    shard = (t.world.rank, t.world.size)   # rank r takes every w-th index of each permutation
    t.samplers = {"ct": BatchSampler(len(data.ct_train), cfg.batch_size if cfg.has_translators
                                        else t.batch_size, t.generator, *shard)}
    for k in data.sources if cfg.samples_sources else ():
        t.samplers[k] = BatchSampler(len(data.sources[k]), cfg.batch_size if cfg.has_translators
                                        else t.batch_size, t.generator, *shard)
    for k, n in extra_sizes(t).items():
        t.samplers[f"extra:{k}"] = BatchSampler(n, t.batch_size, t.generator, *shard)
    t.engines = {name: MemoryEngine(sampler, augment_spec(t.cfg), t.aug_generator, t.device)
                    for name, sampler in t.samplers.items()}
    if cfg.loader != "memory":
        init_loaders(t, t.batch_size)

def extra_sets(t) -> dict:
    """What predictor-only settings add to real CT, per source: ORACLE the source patients
    rendered as CT, NAIVE the raw source slices, CYCLEGAN their translations by the frozen G."""
    kind, data = t.cfg.kind, t.data
    if kind == "ORACLE":
        return data.sources_as_ct
    if kind == "NAIVE":
        return data.sources
    if kind == "CYCLEGAN":
        if not t._extra:
            t._extra = {k: translated_set(t, k) for k in t.cfg.sources}
        return t._extra
    return {}

def extra_sizes(t) -> dict:
    """extra_sets()'s sizes, known before CycleGAN's translators are trained."""
    if t.cfg.kind == "CYCLEGAN":
        return {k: len(t.data.sources[k]) for k in t.cfg.sources}
    return {k: len(s) for k, s in extra_sets(t).items()}

def translated_set(t, source: str):
    from ..data.datasets import SliceSet
    s = t.data.sources[source]
    return SliceSet("ct", t.translate(s.images, source), s.ages, s.patient_ids)

def init_loaders(t, batch_size: int) -> None:
    """Per-batch resizing from native resolution (DALI or torch), sharded by rank under
    torch.distributed. A resumed run continues each loader after its last consumed batch."""
    from ..data.loaders import SliceLoader
    cfg = t.cfg
    rank, world = t.world.rank, t.world.size
    sets = {"ct": t.data.ct_train, **(t.data.sources if cfg.samples_sources else {}),
            **({f"extra:{k}": s for k, s in extra_sets(t).items() if s.native is not None}
               if cfg.kind in ("ORACLE", "NAIVE") else {})}
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
