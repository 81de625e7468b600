"""The Trainer: builds models and optimisers from a TrainConfig, runs the loop, evaluates,
translates, and saves/loads checkpoints (atomically, every epoch)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..config import TrainConfig
from ..models import build_predictor
from ..models.reader import AgeReader
from ..data.pipeline import BatchSampler, MemoryEngine
from .data import TrainingData, load_training_data
from .checkpoint import RunFolder, read_checkpoint, write_checkpoint
from .schema import check_fits, check_run_checkpoint
from .augment import augment_batch
from . import batches, evaluation, inference, phases, run_outputs
from . import state as run_state
from .networks import Networks
from .fast import device_defaults, resolve_fast_path, run_device
from .step_functions import FastPath, build_step_functions
from .throughput import counted_step
from .progress import RunProgress
from .distributed import current_world, join_world, rank_seed
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
        self.device = run_device(cfg, self.world)   # also checks that the weights fit, before allocating them
        self.progress = progress
        self.monitor = RunProgress(progress)   # the bar over each phase's steps, and the run folder's train.log
        self._data = data
        self.epoch = 0                       # epochs completed
        self.translator_steps = 0            # translator-only steps completed (warm-up / stage 1)
        self.pretrain_steps = 0              # TL: predictor steps on the source completed
        self.training_progress = 0.0         # fraction of the epochs' steps done (DANN's schedule)
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
        self.step_functions = None           # the step's (compiled / autocast) loss functions
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
        self.pools = make_pools(self.method.translator_sources(cfg), cfg.pool_size,
                                rank_seed(cfg.seed, self.world, 2), self.device)   # image pools per rank
        self.samplers: dict[str, BatchSampler] = {}
        self.engines: dict[str, MemoryEngine] = {}   # the memory engine of each sampler
        self.loaders: dict = {}
        self._trained_in: Optional[Path] = None
        self._folder: Optional[RunFolder] = None   # the run folder fit() trains in
        self._sampler_states: dict = {}
        self._loader_states: dict = {}       # loader name → state after its last consumed batch
        self._real_ct_features: tuple = (None, None)   # (the cues reader, its features of the real-CT probes)
        self._last_cues: Optional[dict] = None
        self._slices_drawn = 0               # training slices batched (every engine, every rank's own)
        self.data_seconds = 0.0              # time spent drawing batches (waiting for a loader included)
        self.flops_per_step: Optional[int] = None   # counted on one step of the first epoch (the MFU)
        if self.world.distributed:
            join_world(self.nets, self.optimizers, self.world, cfg.seed)

    def use_fast_path(self, fast: FastPath) -> None:
        """Run the steps under `fast` (its op backend entered around every step function and
        translation: chosen once for the run); benchmarks pass an explicit one, training resolves its
        own from the config."""
        self.fast = fast
        reader = self.method.feedback_reader(self)
        self.step_functions = build_step_functions(self.nets, self.cfg, fast, self.device, self.age_std, reader,
                                                   self.world.size, self.method.extra_weight(self.cfg))

    # -- data ---------------------------------------------------------------------------------

    @property
    def data(self) -> TrainingData:
        if self._data is None:
            self._data = load_training_data(self.cfg, progress=self.monitor.iterate if self.progress else None)
        return self._data

    @property
    def batch_size(self) -> int:
        return self.method.batch_size(self.cfg)

    def extra_sets(self) -> dict:   # what P's batches add to real CT, per source
        return self.method.extra_sets(self)

    def close_loaders(self) -> None:
        batches.close_loaders(self)

    def steps_per_epoch(self) -> int:
        return batches.steps_per_epoch(self)

    def draw(self, slices, name: str):
        """One batch (images, scaled ages) of `slices` from the sampler (or loader) `name`."""
        return batches.draw(self, slices, name)

    def source_batches(self) -> dict:
        """One batch of every source, in the run's source order (the order the samplers are drawn in)."""
        return {k: SourceBatch(*self.draw(self.data.sources[k], k)) for k in self.cfg.sources}

    def translator_budget(self) -> int:
        """Translator-only steps before the epochs (the method's: warm-up, or the two-stage's stage 1)."""
        return self.method.translator_budget(self.cfg, self.steps_per_epoch)

    # -- training -----------------------------------------------------------------------------

    def fit(self, resume: bool = False, overwrite: bool = False) -> list[dict]:
        """Train until cfg.epochs, checkpointing atomically after every epoch; resume=True continues the
        run in cfg.out_dir, which is never trained into otherwise unless overwrite=True. Order: CT
        readers (label cues / ct_reader feedback), translator-only steps, then the epochs."""
        check_fits(self.cfg.check_schedule(), self.device)   # activations and data, before either is allocated
        with RunFolder(self.cfg.out_dir, lock=self.world.is_main) as folder:   # rank 0 is the one writer
            ckpt = folder.checkpoint
            run_state.take_folder(self, folder, resume, overwrite)   # resumed, refused, or marked for overwrite
            run_outputs.start(self, folder.path, resumed=resume)   # options, train.log (rank 0)
            try:
                return self._fit(ckpt)
            finally:
                self.monitor.close_log()

    def _fit(self, ckpt: Path) -> list[dict]:
        self.prepare()
        self.warm_up(ckpt)
        self.pretrain_on_source(ckpt)
        steps = self.steps_per_epoch()
        with self.monitor.phase(f"{self.cfg.setting} training", self.cfg.epochs * steps, self.epoch * steps):
            for _ in range(self.epoch, self.cfg.epochs):
                self._run_epoch(steps, ckpt)
        self.close_loaders()
        self.use_selected_predictor()
        return self.history

    def _run_epoch(self, steps: int, ckpt: Path) -> None:
        """One epoch, its evaluation and checkpoint, and what the run folder shows of it; the time
        outside the steps is logged beside them (evaluation, checkpoint)."""
        record = self._train_epoch(steps)
        start = time.perf_counter()
        evaluation.after_epoch(self, record)
        record["eval_seconds"] = time.perf_counter() - start
        self.history.append(record)
        self.epoch += 1
        for s in self.schedulers.values():
            s.step()
        start = time.perf_counter()
        self.save(ckpt)
        record["checkpoint_seconds"] = time.perf_counter() - start   # in the next epoch's checkpoint
        run_outputs.epoch_done(self, record, ckpt.parent)   # train.log's line, the pictures (rank 0)

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
            self.use_fast_path(resolve_fast_path(self.cfg, self.device))

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
        start, drawn, drawing = time.perf_counter(), self._slices_drawn, self.data_seconds
        count_at = 1 if self.flops_per_step is None else -1   # one step's FLOPs (not the share-measuring first)
        for i in range(steps):
            self.training_progress = (self.epoch * steps + i) / max(self.cfg.epochs * steps, 1)
            with counted_step(self, i == count_at) as counted:
                parts = self.read_step(self.train_step(measure_share=(i == 0)), f"epoch {self.epoch}, step {i + 1}")
            self.flops_per_step = self.flops_per_step if counted.total is None else counted.total
            self.monitor.advance(parts, f"epoch {self.epoch + 1}/{self.cfg.epochs}")
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + v
        return evaluation.epoch_record(self, steps, time.perf_counter() - start, self._slices_drawn - drawn,
                                       self.data_seconds - drawing, totals)

    def read_step(self, parts: dict, where: str) -> dict:
        """The step's loss terms as floats, checked with every net's weights (evaluation.read_step)."""
        return evaluation.read_step(self, parts, where)

    def train_step(self, measure_share: bool = False) -> dict:
        """One step: the real-CT batch (augmented for AUG-*), then the setting's method (train/methods/)."""
        x, r_x = self.draw(self.data.ct_train, "ct")
        if self._augment is not None:
            x = batches.layout(self, augment_batch(self._augment, x))
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
        return inference.predict(self, images, batch_size)

    def evaluate(self, split: str = "test") -> dict:
        """Slice-level MSE/MAE in years² / years on a CT split, and MSE of patient-mean predictions."""
        return inference.evaluate(self, split)

    @property
    def split_protocol(self) -> str:
        return inference.split_protocol(self.cfg)

    def translate(self, images, source: str = "mri", batch_size: int = 32, net: str = "G") -> torch.Tensor:
        """Translate source-modality slices (N, H, W) or (N, 1, H, W) in [-1, 1] into CT style; net="F"
        translates CT-style slices back into the source's style (the cycle)."""
        return inference.translate(self, images, source, batch_size, net)

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
        written = write_checkpoint(state, path)
        if self._folder is not None:
            self._folder.written(written)   # the folder's checkpoint: an --overwrite is complete
        return written

    @classmethod
    def load(cls, path, data: Optional[TrainingData] = None, progress: bool = False) -> "Trainer":
        path = Path(path)
        state = read_checkpoint(path)
        cfg = check_run_checkpoint(state, path)   # structure, shapes, finite values: before building
        # Inference needs the checkpoint alone: the training folders may have moved or be absent
        # (evaluate() still reads them, and says so when they are gone).
        trainer = cls(cfg, data=data, progress=progress, check_paths=False)
        run_state.restore_checked(trainer, state, path)
        trainer.use_selected_predictor()
        return trainer
