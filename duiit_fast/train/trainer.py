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
from ..errors import DuiitConfigError, DuiitError
from ..eval.evaluate import predict_ages, regression_metrics, require_finite
from ..models import build_predictor
from ..models.reader import AgeReader, OnScale
from ..data.pipeline import BatchSampler, MemoryEngine
from .data import TrainingData, load_training_data
from .checkpoint import CHECKPOINT_NAME, RunFolder, read_checkpoint, write_checkpoint
from .schema import check_fits, check_run_checkpoint
from .state import restore_checked
from .augment import augment_batch
from . import batches, evaluation, phases
from . import state as run_state
from .networks import Networks
from .fast import FastPath, build_step_functions, device_defaults, resolve_device, resolve_fast_path
from .distributed import average_gradients_before_step, broadcast_from_main, current_world, mean_over_ranks, rank_seed
from .methods import method_of
from .step import SourceBatch, make_pools



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
        self.training_progress = 0.0                 # fraction of the epochs' steps done (DANN's schedule)
        self.history: list[dict] = []
        self.best: Optional[dict] = None     # {"epoch", "val_mse", "P": state} of the best epoch on val
        self.age_mean, self.age_std = 55.0, 20.0   # replaced by the CT training set's stats in fit
        self.readers: dict[str, AgeReader] = {}    # "cues": label-cue reader; "feedback": ct_reader
        self.method = method_of(cfg.kind)    # what the setting builds, loads and trains (train/methods/)
        self.method.check_uses(cfg)
        self.extra_cache: dict = {}          # extra sets computed once (the two-stage CycleGAN's translations)
        torch.manual_seed(cfg.seed)
        self._device_fast = device_defaults(cfg, self.device)   # bf16, channels_last, fused Adam
        self.fast: Optional[FastPath] = None   # all switches, resolved when training starts
        self.step_functions = None                       # the step's (compiled / autocast) loss functions
        self.nets = Networks.build(cfg, self.device, self.method, build_predictor)
        if self._device_fast["channels_last"]:
            self.nets.to(memory_format=torch.channels_last)
        self.optimizers, self.schedulers = self.nets.build_optimizers(cfg, self._device_fast["fused_optimizer"])
        self.generator = torch.Generator().manual_seed(cfg.seed)   # data order: shared by all ranks
        # Augmentation draws: the same stream as the data order on one process (as the recorded runs
        # drew them); each rank's own under torch.distributed.
        self.aug_generator = (self.generator if not self.world.distributed
                              else torch.Generator().manual_seed(rank_seed(cfg.seed, self.world, 1)))
        self._augment = self.method.ct_augmentation(cfg)
        self.pools = make_pools(cfg.sources if self.method.translators else (), cfg.pool_size,
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
        if self.method.trains_jointly and self.cfg.pred_feedback == "ct_reader":
            reader = OnScale(self.readers["feedback"], self.age_mean, self.age_std)
        self.step_functions = build_step_functions(self.nets, self.cfg, fast, self.device, self.age_std, reader,
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
        return self.method.batch_size(self.cfg)

    def extra_sets(self) -> dict:
        """What P's batches add to real CT, per source (the method's extra sets)."""
        return self.method.extra_sets(self)

    def close_loaders(self) -> None:
        batches.close_loaders(self)

    def steps_per_epoch(self) -> int:
        if self.cfg.steps_per_epoch:
            return self.cfg.steps_per_epoch
        sizes = [len(self.data.ct_train)] + [len(s) for s in self.data.sources.values()]
        # One pass over the largest set per epoch at any number of ranks (each takes its shard), so
        # the per-epoch learning-rate schedule means the same under torch.distributed.
        return max(1, math.ceil(max(sizes) / (self.batch_size * self.world.size)))

    def translator_budget(self) -> int:
        """Translator-only steps before the epochs: the warm-up; for the two-stage CycleGAN also the
        joint phase's steps, so both arms' translators train for the same number of steps."""
        return self.method.translator_budget(self.cfg, self.steps_per_epoch)

    def _scale(self, ages: torch.Tensor) -> torch.Tensor:
        return (ages - self.age_mean) / self.age_std

    def draw(self, slices, name: str):
        """One batch (images, scaled ages) of `slices` from the sampler (or loader) `name`."""
        if name in self.loaders:
            batch = next(self._loader_iters[name])  # made ahead by the loader's prefetch thread
            self._loader_states[name] = batch.state
        else:
            batch = self.engines[name].next_batch(slices.images, slices.ages)
        self._slices_drawn += len(batch.ages)
        return self._layout(batch.images), self._scale(batch.ages)   # ages: scaled here, for every engine

    def source_batches(self) -> dict:
        """One batch of every source, in the run's source order (the order the samplers are drawn in)."""
        return {k: SourceBatch(*self.draw(self.data.sources[k], k)) for k in self.cfg.sources}

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
        self.prepare()
        self.warm_up(ckpt)
        self.pretrain_on_source(ckpt)
        steps = self.steps_per_epoch()
        epochs = self._bar(range(self.epoch, self.cfg.epochs), desc=f"{self.cfg.setting} epochs",
                           initial=self.epoch, total=self.cfg.epochs)
        for _ in epochs:
            record = self._train_epoch(steps)
            evaluation.after_epoch(self, record)
            self.history.append(record)
            self.epoch += 1
            for s in self.schedulers.values():
                s.step()
            self.save(ckpt)
        self.close_loaders()
        self.use_selected_predictor()
        return self.history

    def prepare(self) -> None:
        if self._sampler_states:
            rng = self.generator.get_state()
            batches.init_samplers(self)   # draws from self.generator: restore its state afterwards
            for k, s in self._sampler_states.items():
                self.samplers[k].load_state_dict(s)
            self.generator.set_state(rng)
            self._sampler_states = {}
        if not self.samplers:
            ct = self.data.ct_train
            self.age_mean, self.age_std = float(ct.ages.mean()), max(float(ct.ages.std()), 1.0)
            batches.init_samplers(self)
        elif self.cfg.loader != "memory" and not self.loaders:
            batches.init_loaders(self, self.batch_size)
        phases.prepare_readers(self)
        if self.fast is None:
            self._setup_fast_path()

    def warm_up(self, ckpt=None) -> None:
        """Translator-only steps up to translator_budget() (phases.warm_up)."""
        phases.warm_up(self, ckpt)

    def pretrain_on_source(self, ckpt=None) -> None:
        """TL's first phase: P on the source slices (phases.pretrain_on_source)."""
        phases.pretrain_on_source(self, ckpt)

    def _train_epoch(self, steps: int) -> dict:
        for net in self.nets.values():
            net.train()
        for k in self.method.frozen_during_epochs:
            self.nets[k].eval()   # the two-stage CycleGAN's translators during its predictor stage
        totals: dict[str, float] = {}
        start, drawn = time.perf_counter(), self._slices_drawn
        for i in range(steps):
            self.training_progress = (self.epoch * steps + i) / max(self.cfg.epochs * steps, 1)
            parts = self.read_step(self.train_step(measure_share=(i == 0)), f"epoch {self.epoch}, step {i + 1}")
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

    def read_step(self, parts: dict, where: str) -> dict:
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

    def train_step(self, measure_share: bool = False) -> dict:
        """One step: the real-CT batch (augmented for AUG-*), then the setting's method (train/methods/)."""
        x, r_x = self.draw(self.data.ct_train, "ct")
        if self._augment is not None:
            x = self._layout(augment_batch(self._augment, x))
        return self.method.step(self, x, r_x, measure_share)

    def label_cues(self) -> dict:
        """The CT reader on G(source) for a fixed probe set of source slices, per source."""
        return evaluation.label_cues(self)

    def image_quality(self) -> dict:
        """Inception score of G(source) and its FID against real CT (Table 5); needs cfg.fid_weights."""
        return evaluation.image_quality(self)

    def use_selected_predictor(self) -> None:
        """After the last epoch, with select_on_val, P becomes the predictor of the best validation
        epoch (chosen on validation, never on test)."""
        if self.cfg.select_on_val and self.best is not None and self.epoch >= self.cfg.epochs:
            self.eval_predictor.load_state_dict(self.best["P"])

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

    def restore(self, state: dict) -> None:
        """Put a checkpoint's state (read_checkpoint) back into this trainer."""
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
