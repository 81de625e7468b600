"""The Trainer: builds models and optimisers from a TrainConfig, runs the loop, evaluates,
translates, and saves/loads checkpoints (atomically, every epoch)."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from .. import ops
from ..config import TrainConfig
from ..errors import DuiitConfigError, DuiitDataError, DuiitError
from ..eval.evaluate import patient_squared_errors, per_source, predict_ages, regression_metrics
from ..eval.label_cues import (AgeReader, OnScale, evenly_spaced, label_cue_metrics, reader_features,
                               train_reader)
from ..models import build_predictor
from ..models.predictor import recalibrate_batchnorm
from ..data.pipeline import Augment, BatchSampler, MemoryEngine
from .data import TrainingData, load_training_data
from .checkpoint import CHECKPOINT_NAME, RunFolder, load_reader, read_checkpoint, write_checkpoint
from .schema import RESTORE_ERRORS, check_fits, check_run_checkpoint, one_line, restore_checked
from .augment import augment_batch, paper_augmentation
from .baselines import dann_coefficient, dann_step, mtl_step
from . import state as run_state
from .networks import Networks
from .fast import FastPath, build_step_functions, device_defaults, resolve_fast_path
from .distributed import average_gradients_before_step, broadcast_from_main, current_world, mean_over_ranks, rank_seed
from .step import SourceBatch, joint_step, make_pools, predictor_step, translator_step

LABEL_CUE_PROBES = 240        # source slices translated for the label-cue metric
WARMUP_CHECKPOINT_EVERY = 250  # translator-only steps between checkpoints during the warm-up
RUNAWAY_FACTOR = 100          # validation MSE this many times that of predicting the mean: stop


def require_finite(images: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(torch.as_tensor(images)).all()):
        raise DuiitDataError(f"{what} input", "holds NaN or infinite values (a network would return NaN)")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DuiitConfigError(f"config device: {name} requested but CUDA is not available")
    return device


class Trainer:
    """DUIIT (MIX-*), predictor-only settings (PURE-CT, ORACLE, NAIVE) or the two-stage CycleGAN
    baseline, from one TrainConfig.

    >>> trainer = Trainer(TrainConfig(setting="MIX-CT-MRI", epochs=2))
    >>> trainer.fit(); trainer.evaluate("test")["mse"]
    """

    def __init__(self, cfg: TrainConfig, data: Optional[TrainingData] = None, progress: bool = True,
                 check_paths: bool = True):
        self.cfg = cfg.validate(check_paths)
        self.world = current_world()          # rank and size under torchrun; (0, 1) otherwise
        self.device = resolve_device(cfg.device)
        check_fits(cfg, self.device, training=False)   # the weights, before they are allocated
        if self.world.distributed and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", self.world.local_rank)   # one GPU per rank
        if cfg.loader == "dali":
            from ..data.loaders import dali_available
            if not dali_available():
                raise DuiitConfigError("config loader: 'dali' needs nvidia-dali (pip install nvidia-dali-cuda130); "
                                       "use 'auto' or 'torch' without it")
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.progress = progress
        self._data = data
        self.epoch = 0                       # epochs completed
        self.translator_steps = 0            # translator-only steps completed (warm-up / stage 1)
        self.pretrain_steps = 0              # TL: predictor steps on the source completed
        self._progress = 0.0                 # fraction of the epochs' steps done (DANN's schedule)
        self.history: list[dict] = []
        self.best: Optional[dict] = None     # {"epoch", "val_mse", "P": state} of the best epoch on val
        self.age_mean, self.age_std = 55.0, 20.0   # replaced by the CT training set's stats in fit
        self.readers: dict[str, AgeReader] = {}    # "cues": label-cue reader; "feedback": ct_reader
        self._extra: dict = {}               # predictor-only extra sets (oracle CT, raw/translated sources)
        torch.manual_seed(cfg.seed)
        self._device_fast = device_defaults(cfg, self.device)   # bf16, channels_last, fused Adam
        self.fast: Optional[FastPath] = None   # all switches, resolved when training starts
        self._fns = None                       # the step's (compiled / autocast) loss functions
        self.nets = Networks.build(cfg, self.device, build_predictor)
        if self._device_fast["channels_last"]:
            self.nets.to(memory_format=torch.channels_last)
        self.optimizers, self.schedulers = self.nets.build_optimizers(cfg, self._device_fast["fused_optimizer"])
        self.generator = torch.Generator().manual_seed(cfg.seed)   # data order: shared by all ranks
        # Augmentation draws: the same stream as the data order on one process (as the recorded runs
        # drew them); each rank's own under torch.distributed.
        self.aug_generator = (self.generator if not self.world.distributed
                              else torch.Generator().manual_seed(rank_seed(cfg.seed, self.world, 1)))
        self._augment = paper_augmentation(cfg.setting, cfg.image_size) if cfg.kind == "AUG" else None
        self.pools = make_pools(cfg.sources if cfg.has_translators else (), cfg.pool_size,
                                rank_seed(cfg.seed, self.world, 2), self.device)   # image pools per rank
        self.samplers: dict[str, BatchSampler] = {}
        self.engines: dict[str, MemoryEngine] = {}   # the memory engine of each sampler
        self.loaders: dict = {}
        self._trained_in: Optional[Path] = None
        self._sampler_states: dict = {}
        self._loader_states: dict = {}       # loader name → state after its last consumed batch
        self._real_ct_features: tuple = (None, None)   # (the cues reader, its features of the real-CT probes)
        self._last_cues: Optional[dict] = None
        self._slices_drawn = 0               # training slices batched (every engine, every rank's own)
        if self.world.distributed:
            self._join_world()

    def _join_world(self) -> None:
        """Data parallelism (train/distributed.py): rank 0's weights everywhere, every optimiser
        averages its gradients over the ranks before it steps, rank-local torch randomness."""
        broadcast_from_main(self.nets.values())
        for optimizer in self.optimizers.values():
            average_gradients_before_step(optimizer, self.world)
        torch.manual_seed(rank_seed(self.cfg.seed, self.world, 3))

    # -- construction -------------------------------------------------------------------------

    def _setup_fast_path(self) -> None:
        """Resolve compile/backend for the device and build the step's loss functions."""
        self.use_fast_path(resolve_fast_path(self.cfg, self.device))

    def use_fast_path(self, fast: FastPath) -> None:
        """Run the steps under `fast` (its op backend entered around every step function and
        translation: chosen once for the run); benchmarks pass an explicit one, training resolves its
        own from the config."""
        self.fast = fast
        reader = None
        if self.cfg.kind == "MIX" and self.cfg.pred_feedback == "ct_reader":
            reader = OnScale(self.readers["feedback"], self.age_mean, self.age_std)
        self._fns = build_step_functions(self.nets, self.cfg, fast, self.device, self.age_std, reader,
                                         replicas=self.world.size)

    # -- data ---------------------------------------------------------------------------------

    @property
    def data(self) -> TrainingData:
        if self._data is None:
            self._data = load_training_data(self.cfg, progress=self._bar if self.progress else None)
        return self._data

    def _bar(self, iterable, **kwargs):
        from tqdm.auto import tqdm
        return tqdm(iterable, leave=False, disable=not self.progress, **kwargs)

    @property
    def batch_size(self) -> int:
        return self.cfg.batch_size if self.cfg.kind == "MIX" else self.cfg.predictor_batch_size

    def _init_samplers(self) -> None:
        cfg, data = self.cfg, self.data
        shard = (self.world.rank, self.world.size)   # rank r takes every w-th index of each permutation
        self.samplers = {"ct": BatchSampler(len(data.ct_train), cfg.batch_size if cfg.has_translators
                                            else self.batch_size, self.generator, *shard)}
        for k in data.sources if cfg.samples_sources else ():
            self.samplers[k] = BatchSampler(len(data.sources[k]), cfg.batch_size if cfg.has_translators
                                            else self.batch_size, self.generator, *shard)
        for k, n in self._extra_sizes().items():
            self.samplers[f"extra:{k}"] = BatchSampler(n, self.batch_size, self.generator, *shard)
        self.engines = {name: MemoryEngine(sampler, self._augment_spec(), self.aug_generator, self.device)
                        for name, sampler in self.samplers.items()}
        if cfg.loader != "memory":
            self._init_loaders(self.batch_size)

    def extra_sets(self) -> dict:
        """What predictor-only settings add to real CT, per source: ORACLE the source patients
        rendered as CT, NAIVE the raw source slices, CYCLEGAN their translations by the frozen G."""
        kind, data = self.cfg.kind, self.data
        if kind == "ORACLE":
            return data.sources_as_ct
        if kind == "NAIVE":
            return data.sources
        if kind == "CYCLEGAN":
            if not self._extra:
                self._extra = {k: self._translated_set(k) for k in self.cfg.sources}
            return self._extra
        return {}

    def _extra_sizes(self) -> dict:
        """extra_sets()'s sizes, known before CycleGAN's translators are trained."""
        if self.cfg.kind == "CYCLEGAN":
            return {k: len(self.data.sources[k]) for k in self.cfg.sources}
        return {k: len(s) for k, s in self.extra_sets().items()}

    def _translated_set(self, source: str):
        from ..data.datasets import SliceSet
        s = self.data.sources[source]
        return SliceSet("ct", self.translate(s.images, source), s.ages, s.patient_ids)

    def _init_loaders(self, batch_size: int) -> None:
        """Per-batch resizing from native resolution (DALI or torch), sharded by rank under
        torch.distributed. A resumed run continues each loader after its last consumed batch."""
        from ..data.loaders import SliceLoader
        cfg = self.cfg
        rank, world = self.world.rank, self.world.size
        sets = {"ct": self.data.ct_train, **(self.data.sources if cfg.samples_sources else {}),
                **({f"extra:{k}": s for k, s in self.extra_sets().items() if s.native is not None}
                   if cfg.kind in ("ORACLE", "NAIVE") else {})}
        augment = self._augment_spec()
        self.loaders = {
            name: SliceLoader(s.native, s.ages, cfg.image_size, batch_size, augment, seed=cfg.seed + 7 * i,
                              backend=cfg.loader, device=str(self.device), rank=rank, world_size=world)
            for i, (name, s) in enumerate(sets.items())}
        for name, state in self._loader_states.items():
            if name in self.loaders and state is not None:
                self.loaders[name].load_state_dict(state)
        self._loader_iters = {name: iter(loader) for name, loader in self.loaders.items()}

    def close_loaders(self) -> None:
        """Stop the loaders' prefetch threads; fit() calls it when training ends."""
        for loader in self.loaders.values():
            loader.close()
        self.loaders, self._loader_iters = {}, {}

    def steps_per_epoch(self) -> int:
        if self.cfg.steps_per_epoch:
            return self.cfg.steps_per_epoch
        sizes = [len(self.data.ct_train)] + [len(s) for s in self.data.sources.values()]
        # One pass over the largest set per epoch at any number of ranks (each takes its shard), so
        # the per-epoch learning-rate schedule means the same under torch.distributed.
        return max(1, math.ceil(max(sizes) / (self.batch_size * self.world.size)))

    def translator_budget(self) -> int:
        """Translator-only steps before the epochs: the warm-up; for the two-stage CycleGAN also the
        joint phase's steps (and DUIIT's joint warm-up), so both arms' translators train for the
        same number of steps."""
        if self.cfg.kind == "CYCLEGAN":
            return self.cfg.translator_warmup_steps + self.cfg.epochs * self.steps_per_epoch()
        return self.cfg.translator_warmup_steps if self.cfg.kind == "MIX" else 0

    def _scale(self, ages: torch.Tensor) -> torch.Tensor:
        return (ages - self.age_mean) / self.age_std

    def _batch(self, slices, name: str):
        if name in self.loaders:
            batch = next(self._loader_iters[name])  # made ahead by the loader's prefetch thread
            self._loader_states[name] = batch.state
        else:
            batch = self.engines[name].next_batch(slices.images, slices.ages)
        self._slices_drawn += len(batch.ages)
        return self._layout(batch.images), self._scale(batch.ages)   # ages: scaled here, for every engine

    def _source_batches(self) -> dict:
        """One batch of every source, in the run's source order (the order the samplers are drawn in)."""
        return {k: SourceBatch(*self._batch(self.data.sources[k], k)) for k in self.cfg.sources}

    def _augment_spec(self) -> Augment:
        cfg = self.cfg
        return Augment(flip=cfg.augment_flip, crop_min=cfg.augment_crop_min, shift=cfg.augment_shift)

    def _layout(self, images: torch.Tensor) -> torch.Tensor:
        if self._device_fast["channels_last"]:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    # -- training -----------------------------------------------------------------------------

    def fit(self, resume: bool = False, overwrite: bool = False) -> list[dict]:
        """Train until cfg.epochs, checkpointing atomically after every epoch. With resume=True the
        checkpoint in cfg.out_dir is loaded first and the run continues from it; a folder that holds
        a run is never trained into otherwise, unless overwrite=True. Order: CT readers (label
        cues / ct_reader feedback), translator-only steps, then the epochs."""
        check_fits(self.cfg, self.device)   # the step's activations and the data, before either is allocated
        with RunFolder(self.cfg.out_dir, lock=self.world.is_main) as folder:   # rank 0 is the one writer
            ckpt = folder.checkpoint
            if resume:
                if not ckpt.exists():
                    raise DuiitError(f"{self.cfg.out_dir}: nothing to resume (no {CHECKPOINT_NAME}); "
                                     "drop --resume to start a new run")
                state = read_checkpoint(ckpt)
                check_run_checkpoint(state, ckpt)
                run_state.check_resumable(self.cfg, self.world.size, state, ckpt)
                restore_checked(self, state, ckpt)
            elif ckpt.exists() and not overwrite and self._trained_in != folder.path.resolve():
                raise DuiitError(f"{self.cfg.out_dir} already holds a run ({CHECKPOINT_NAME}); use --resume to "
                                 "continue it or --overwrite to replace it")
            self._trained_in = folder.path.resolve()   # a further fit() of this trainer continues its own run
            return self._fit(ckpt)

    def _fit(self, ckpt: Path) -> list[dict]:
        self._prepare()
        self.warm_up(ckpt)
        self.pretrain_on_source(ckpt)
        steps = self.steps_per_epoch()
        epochs = self._bar(range(self.epoch, self.cfg.epochs), desc=f"{self.cfg.setting} epochs",
                           initial=self.epoch, total=self.cfg.epochs)
        for _ in epochs:
            record = self._train_epoch(steps)
            self._after_epoch(record)
            self.history.append(record)
            self.epoch += 1
            for s in self.schedulers.values():
                s.step()
            self.save(ckpt)
        self.close_loaders()
        self.use_selected_predictor()
        return self.history

    def _prepare(self) -> None:
        if self._sampler_states:
            rng = self.generator.get_state()
            self._init_samplers()   # draws from self.generator: restore its state afterwards
            for k, s in self._sampler_states.items():
                self.samplers[k].load_state_dict(s)
            self.generator.set_state(rng)
            self._sampler_states = {}
        if not self.samplers:
            ct = self.data.ct_train
            self.age_mean, self.age_std = float(ct.ages.mean()), max(float(ct.ages.std()), 1.0)
            self._init_samplers()
        elif self.cfg.loader != "memory" and not self.loaders:
            self._init_loaders(self.batch_size)
        self._prepare_readers()
        if self.fast is None:
            self._setup_fast_path()

    def _prepare_readers(self) -> None:
        """The label-cue reader (real CT train, plus the source patients rendered as CT on the
        phantom) and, for pred_feedback = "ct_reader", the feedback reader (real CT train only)."""
        cfg, data = self.cfg, self.data
        if not cfg.has_translators:
            return
        wanted = (["cues"] if cfg.label_cues else []) + (["feedback"] if cfg.pred_feedback == "ct_reader" else [])
        for role in wanted:
            if role in self.readers:
                continue
            if cfg.reader_path is not None:
                self.readers[role] = load_reader(cfg.reader_path, role, self.device)
                continue
            sets = [data.ct_train] + (list(data.sources_as_ct.values()) if role == "cues" else [])
            images, ages = torch.cat([s.images for s in sets]), torch.cat([s.ages for s in sets])
            self.readers[role] = train_reader(images, ages, cfg.reader_steps, cfg.seed + 101, self.device,
)

    def warm_up(self, ckpt=None) -> None:
        """Translator-only steps (λ = 0, no predictor) up to translator_budget(); from
        translator_init when given, checkpointed every WARMUP_CHECKPOINT_EVERY steps."""
        fresh = self.translator_steps == self.epoch == self.pretrain_steps == 0
        if self.cfg.translator_init and fresh:   # used whatever the warm-up's length, never ignored
            self._load_translators(self.cfg.translator_init)
        budget = self.translator_budget()
        if self.translator_steps >= budget:
            return
        bar = self._bar(range(self.translator_steps, budget), desc=f"{self.cfg.setting} translator",
                        initial=self.translator_steps, total=budget)
        for _ in bar:
            x, _ = self._batch(self.data.ct_train, "ct")
            sources = self._source_batches()
            parts = translator_step(self.nets, self.optimizers, self.pools, x, sources, self.cfg, fns=self._fns)
            self.translator_steps += 1
            self._read_step(parts, f"translator step {self.translator_steps}")
            if ckpt is not None and (self.translator_steps % WARMUP_CHECKPOINT_EVERY == 0
                                     or self.translator_steps == budget):
                self.save(ckpt)

    def pretrain_on_source(self, ckpt=None) -> None:
        """TL's first phase: P on the source slices and their labels for as many steps as the
        fine-tune has, then a fresh Adam for the fine-tune on CT (paper, appendix A.6)."""
        budget = self.cfg.epochs * self.steps_per_epoch() if self.cfg.kind == "TL" else 0
        if self.pretrain_steps >= budget or self.epoch > 0:   # a longer resumed run does not pretrain again
            return
        (source,) = self.cfg.sources
        for _ in self._bar(range(self.pretrain_steps, budget), desc=f"{self.cfg.setting} pretraining",
                           initial=self.pretrain_steps, total=budget):
            xs, r_s = self._batch(self.data.sources[source], source)
            parts = predictor_step(self.nets["P"], self.optimizers["pred"], xs, r_s, None, self.age_std, self._fns,
                                   self.world.size)
            self.pretrain_steps += 1
            self._read_step(parts, f"pretraining step {self.pretrain_steps}")
            if self.pretrain_steps == budget:
                self.optimizers["pred"].state.clear()   # the fine-tune starts a fresh Adam
            if ckpt is not None and (self.pretrain_steps % WARMUP_CHECKPOINT_EVERY == 0
                                     or self.pretrain_steps == budget):
                self.save(ckpt)

    def _load_translators(self, path) -> None:
        """Start from another run's translators, critics, their optimisers and pools (an experiment's
        shared warm-up); the predictor and the data order stay this run's own."""
        state = read_checkpoint(path)
        theirs = check_run_checkpoint(state, path)
        if not theirs.has_translators:
            raise DuiitConfigError(f"config translator_init: {path} holds no translators (setting {theirs.setting})")
        keys = ("sources", "ngf", "ndf", "resolved_n_blocks", "image_size", "lambda_cyc", "lr_translator", "pool_size",
                "lambda_identity", "generator")
        differ = [k for k in keys if getattr(theirs, k) != getattr(self.cfg, k)]
        if differ:
            raise DuiitConfigError(f"config translator_init: {self.cfg.translator_init} was trained with another "
                                   f"{', '.join(differ)} than this run")
        try:
            for k in ("G", "F", "D_s", "D_t"):
                self.nets[k].load_state_dict(state["nets"][k])
            for k in ("gen", "disc"):
                run_state.load_optimizer(self.optimizers[k], state["optimizers"][k])
            run_state.load_pools(self.pools, state, self.device)
        except RESTORE_ERRORS as exc:
            raise DuiitError(f"config translator_init: {path}: cannot be restored ({one_line(exc)})") from None
        self.translator_steps = min(state.get("translator_steps", 0), self.translator_budget())

    def _train_epoch(self, steps: int) -> dict:
        for net in self.nets.values():
            net.train()
        for k in ("G", "F") if self.cfg.kind == "CYCLEGAN" else ():
            self.nets[k].eval()   # stage 2: the translators are frozen
        totals: dict[str, float] = {}
        start, drawn = time.perf_counter(), self._slices_drawn
        for i in range(steps):
            self._progress = (self.epoch * steps + i) / max(self.cfg.epochs * steps, 1)
            parts = self._read_step(self._train_step(measure_share=(i == 0)), f"epoch {self.epoch}, step {i + 1}")
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + v
        seconds = time.perf_counter() - start
        record = {"epoch": self.epoch, "steps": steps, "seconds": seconds,
                  "pairs_per_s": steps * self.batch_size * self.world.size / max(seconds, 1e-9),
                  # every slice a step consumed (CT, sources, extra sets), over all ranks
                  "slices_per_s": (self._slices_drawn - drawn) * self.world.size / max(seconds, 1e-9),
                  "lr": [g["lr"] for o in self.optimizers.values() for g in o.param_groups]}
        record.update({k: v / steps for k, v in totals.items() if k != "grad_share"})
        if "grad_share" in totals:   # measured on the epoch's first step
            record["grad_share"] = totals["grad_share"]
        return record

    def _read_step(self, parts: dict, where: str) -> dict:
        """The step's loss terms as floats, after checking them and every net's weights (after the
        update, so nothing non-finite is ever saved). One host sync per step for all of it: the
        terms and one reduction per net travel to the host as one tensor."""
        per_net = [torch.stack([p.detach().float().abs().sum() for p in net.parameters()]).sum()
                   for net in self.nets.values()]
        names = list(parts)
        values = torch.stack([torch.as_tensor(parts[k], device=self.device).float().reshape(()) for k in names]
                             + per_net)
        values = mean_over_ranks(values, self.world).tolist()   # every rank logs and checks the same numbers
        read = dict(zip(names, values[:len(names)]))
        bad = [k for k, v in read.items() if not math.isfinite(v)]
        if bad:
            raise DuiitError(f"training diverged at {where}: loss term {bad[0]} = {read[bad[0]]} "
                             "(lower the learning rates)")
        for name, total in zip(self.nets, values[len(names):]):
            if not math.isfinite(total):
                raise DuiitError(f"training diverged at {where}: the weights of {name} are no longer finite "
                                 f"after the update (losses {', '.join(f'{k} {v:.3g}' for k, v in read.items())}); "
                                 "lower the learning rates")
        return read

    def _train_step(self, measure_share: bool = False) -> dict:
        data = self.data
        x, r_x = self._batch(data.ct_train, "ct")
        if self._augment is not None:
            x = self._layout(augment_batch(self._augment, x))
        if self.cfg.kind in ("MTL", "DANN"):
            (source,) = self.cfg.sources
            xs, r_s = self._batch(data.sources[source], source)
            if self.cfg.kind == "MTL":
                parts = mtl_step(self.nets, self.optimizers["pred"], x, r_x, xs, r_s, self.age_std)
            else:
                parts = dann_step(self.nets, self.optimizers["pred"], x, r_x, xs, r_s, self.age_std,
                                  dann_coefficient(self._progress))
        elif self.cfg.kind != "MIX":
            sets = self.extra_sets()
            # In the run's source order: P_cal's scale and shift are indexed by it.
            extra = [self._batch(sets[k], f"extra:{k}") for k in self.cfg.sources if k in sets]
            parts = predictor_step(self.nets["P"], self.optimizers["pred"], x, r_x, extra, self.age_std, self._fns,
                                   self.world.size)
        else:
            sources = self._source_batches()
            parts = joint_step(self.nets, self.optimizers, self.pools, x, r_x, sources, self.cfg,
                               measure_share=measure_share, fns=self._fns)
        return parts

    def _batchnorm_groups(self) -> list:
        """The images P's BatchNorm statistics are re-estimated on before an evaluation: real CT, and for
        training_mix every group P's training batches mixed with it (one batch each, so 1:1)."""
        ct = self.data.ct_train.images
        if self.cfg.bn_stats == "real_ct":
            return [ct]
        if self.cfg.kind in ("MTL", "DANN"):
            return [ct] + [self.data.sources[k].images for k in self.cfg.sources]
        if self.cfg.kind != "MIX":
            return [ct] + [s.images for s in self.extra_sets().values()]
        groups = [ct]
        for k in self.cfg.sources:   # G's translations as P sees them now; a CT-sized subset suffices
            images = self.data.sources[k].images
            picked = images[evenly_spaced(len(images), min(len(images), len(ct)))]
            groups.append(self.translate(picked, k))
        return groups

    def _after_epoch(self, record: dict) -> None:
        """Validation MSE (and the best epoch on it) and the translators' label cues: rank 0's job
        (the full validation set, as in one process); the other ranks go on to the next epoch."""
        if not self.world.is_main:
            return
        if self.cfg.bn_stats != "running":
            recalibrate_batchnorm(self.eval_predictor, self._batchnorm_groups(), self.device)
        val = self.data.split("val")
        pred = self._predict_with(self.eval_predictor, val.images)
        record["val_mse"] = regression_metrics(pred, val)["mse"]
        # Per patient, so that the luck of choosing the best epoch can be taken out (cross_fitted_val_mse).
        record["val_patient_mse"], record["val_patient_slices"] = patient_squared_errors(pred, val)
        # Predicting the mean age scores about the ages' variance; far above it the run has run away.
        baseline = float(self.data.ct_train.ages.var(unbiased=False)) + float(
            (self.data.ct_val.ages.mean() - self.data.ct_train.ages.mean()) ** 2)
        if record["val_mse"] > RUNAWAY_FACTOR * max(baseline, 1.0):
            raise DuiitError(f"training ran away at epoch {self.epoch}: validation MSE {record['val_mse']:.3g} years² "
                             f"is over {RUNAWAY_FACTOR}x that of predicting the mean age ({baseline:.1f}); "
                             "lower the learning rates")
        if self.best is None or record["val_mse"] < self.best["val_mse"]:
            snapshot = {k: v.detach().cpu().clone() for k, v in self.eval_predictor.state_dict().items()}
            self.best = {"epoch": self.epoch, "val_mse": record["val_mse"], "P": snapshot}
        if "cues" in self.readers:
            # CycleGAN's translators are frozen during the epochs: their cues are measured once.
            if self.cfg.kind == "MIX" or self._last_cues is None:
                self._last_cues = self.label_cues()
            record.update(self._last_cues)

    def use_selected_predictor(self) -> None:
        """After the last epoch, with select_on_val, P becomes the predictor of the best validation
        epoch (chosen on validation, never on test)."""
        if self.cfg.select_on_val and self.best is not None and self.epoch >= self.cfg.epochs:
            self.eval_predictor.load_state_dict(self.best["P"])

    def label_cues(self) -> dict:
        """The label-cue reader on G(source) for a fixed probe set of source slices, per source
        (keys prefixed by the source when there are several)."""
        reader = self.readers["cues"]
        cached_reader, real_ct_features = self._real_ct_features
        if cached_reader is not reader:   # real CT and the frozen reader do not change between epochs
            ct = self.data.ct_train
            real_ct_features = reader_features(reader, ct.images[evenly_spaced(len(ct), LABEL_CUE_PROBES)], self.device)
            self._real_ct_features = (reader, real_ct_features)

        def metrics_of(k):
            s, as_ct = self.data.sources[k], self.data.sources_as_ct.get(k)
            idx = evenly_spaced(len(s), LABEL_CUE_PROBES)
            return label_cue_metrics(reader, self.translate(s.images[idx], k), s.ages[idx], self.device,
                                     None if as_ct is None else as_ct.images[idx], real_ct_features=real_ct_features)
        return per_source(self.cfg.sources, metrics_of)

    def image_quality(self) -> dict:
        """Inception score of G(source) and its FID against real CT (the paper's Table 5), on the
        label-cue probe slices, per source; needs cfg.fid_weights (a local weights file)."""
        from ..eval.inception import inception_metrics, load_inception
        model = load_inception(self.cfg.fid_weights, self.device)
        ct = self.data.ct_train
        real = ct.images[evenly_spaced(len(ct), LABEL_CUE_PROBES)]

        def metrics_of(k):
            s = self.data.sources[k]
            translated = self.translate(s.images[evenly_spaced(len(s), LABEL_CUE_PROBES)], k)
            return inception_metrics(model, translated, real, self.device)
        return per_source(self.cfg.sources, metrics_of)

    # -- inference ----------------------------------------------------------------------------

    @property
    def eval_predictor(self) -> nn.Module:
        """The predictor that is evaluated and used."""
        return self.nets["P"]

    def predict(self, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        """Ages in years for (N, 1, S, S) CT slices in [-1, 1]."""
        require_finite(images, "predict")
        return self._predict_with(self.eval_predictor, images, batch_size)

    def _predict_with(self, predictor: nn.Module, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        return predict_ages(predictor, images, self.device, self.age_mean, self.age_std, batch_size)

    def evaluate(self, split: str = "test") -> dict:
        """Slice-level MSE/MAE in years² / years on a CT split, and MSE of patient-mean predictions."""
        slices = self.data.split(split)
        return {**regression_metrics(self.predict(slices.images), slices), "split": self.split_protocol}

    @property
    def split_protocol(self) -> str:
        if self.cfg.ct is not None and self.cfg.split == "image":
            return "image-level (leaky: slices of one patient can be in train and test)"
        return "patient-level"

    @torch.no_grad()
    def translate(self, images, source: str = "mri", batch_size: int = 32) -> torch.Tensor:
        """Translate source-modality slices (N, H, W) or (N, 1, H, W) in [-1, 1] into CT style."""
        if "G" not in self.nets or source not in self.nets["G"]:
            have = list(self.nets["G"]) if "G" in self.nets else []
            raise DuiitConfigError(f"no translator for source {source!r} in setting {self.cfg.setting} "
                                   f"(translators: {have or 'none'})")
        x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images, dtype=torch.float32)
        if x.dim() == 3:
            x = x[:, None]
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"translate needs (N, [1,] H, W) with H, W multiples of 4, got {tuple(x.shape)}")
        require_finite(x, "translate")
        G = self.nets["G"][source]
        was_training = G.training
        G.eval()
        # The run's op backend: its resolved fast path once it has one, else the configured one.
        with ops.use_backend(self.fast.backend if self.fast is not None else self.cfg.backend):
            out = [G(x[i:i + batch_size].to(self.device)).float().cpu() for i in range(0, len(x), batch_size)]
        G.train(was_training)
        return torch.cat(out)

    # -- checkpoints --------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return run_state.capture(self)

    def _load_state(self, state: dict) -> None:
        run_state.restore(self, state)

    def save(self, path) -> Path:
        """Write a complete checkpoint atomically (temporary file, fsync, then rename). Under
        torch.distributed every rank calls it and rank 0 alone writes."""
        state = self.state_dict()
        if not self.world.is_main:
            return Path(path)
        return write_checkpoint(state, path)

    @classmethod
    def load(cls, path, data: Optional[TrainingData] = None, progress: bool = False) -> "Trainer":
        path = Path(path)
        state = read_checkpoint(path)
        cfg = check_run_checkpoint(state, path)   # structure, shapes, finite values: before building
        # Inference needs the checkpoint alone: the training folders may have moved or be absent
        # (evaluate() still reads them, and says so when they are gone).
        trainer = cls(cfg, data=data, progress=progress, check_paths=False)
        restore_checked(trainer, state, path)
        trainer.use_selected_predictor()
        return trainer
