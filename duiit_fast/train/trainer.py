"""The Trainer: builds models and optimisers from a TrainConfig, runs the loop, evaluates,
translates, and saves/loads checkpoints (atomically, every epoch)."""
from __future__ import annotations

import math
import pickle
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..errors import DuiitConfigError, DuiitError
from ..io import atomic_path
from ..models import PatchDiscriminator, ResnetGenerator, build_predictor
from .data import BatchSampler, TrainingData, load_training_data
from .schedule import linear_decay
from .step import SourceBatch, joint_step, make_pools, predictor_step

CHECKPOINT_NAME = "checkpoint.pt"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DuiitConfigError(f"config device: {name} requested but CUDA is not available")
    return device


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to max_shift pixels in x and y; uncovered pixels become air (-1)."""
    n, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4, value=-1.0)
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])


def read_checkpoint(path) -> dict:
    """Load a checkpoint written by Trainer.save; anything else is one clear error."""
    path = Path(path)
    if not path.is_file():
        raise DuiitError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or not {"config", "nets", "epoch"} <= state.keys():
            raise KeyError("config/nets/epoch")
    except (RuntimeError, KeyError, TypeError, EOFError, OSError, pickle.UnpicklingError) as exc:
        raise DuiitError(f"{path}: not a duiit_fast checkpoint ({exc.__class__.__name__})") from None
    return state


class Trainer:
    """DUIIT (MIX-*), predictor-only (PURE-CT) or the ORACLE bound, from one TrainConfig.

    >>> trainer = Trainer(TrainConfig(setting="MIX-CT-MRI", epochs=2))
    >>> trainer.fit(); trainer.evaluate("test")["mse"]
    """

    def __init__(self, cfg: TrainConfig, data: Optional[TrainingData] = None, progress: bool = True):
        self.cfg = cfg.validate()
        self.device = resolve_device(cfg.device)
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
        self.history: list[dict] = []
        self.age_mean, self.age_std = 55.0, 20.0   # replaced by the CT training set's stats in fit
        torch.manual_seed(cfg.seed)
        self.nets = self._build_models()
        self.optimizers, self.schedulers = self._build_optimizers()
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.pools = make_pools(cfg.sources if cfg.kind == "MIX" else (), cfg.pool_size, cfg.seed, self.device)
        self.samplers: dict[str, BatchSampler] = {}
        self.loaders: dict = {}

    # -- construction -------------------------------------------------------------------------

    def _build_models(self) -> dict:
        cfg, dev = self.cfg, self.device
        nets = {"P": build_predictor(cfg.predictor).to(dev)}
        if cfg.kind == "MIX":
            def gen():
                return ResnetGenerator(1, 1, cfg.ngf, cfg.resolved_n_blocks, backend=cfg.backend).to(dev)

            def disc():
                return PatchDiscriminator(1, cfg.ndf, 3, backend=cfg.backend).to(dev)
            nets["G"] = nn.ModuleDict({k: gen() for k in cfg.sources})   # source → CT
            nets["F"] = nn.ModuleDict({k: gen() for k in cfg.sources})   # CT → source
            nets["D_s"] = nn.ModuleDict({k: disc() for k in cfg.sources})
            nets["D_t"] = disc()                                         # shared CT critic
        return nets

    def _build_optimizers(self):
        cfg = self.cfg
        betas = (cfg.beta1, 0.999)
        if cfg.kind != "MIX":
            opt = torch.optim.Adam(self.nets["P"].parameters(), lr=cfg.lr_predictor, betas=betas)
            optimizers = {"pred": opt}
        else:
            translator = [p for k in ("G", "F") for p in self.nets[k].parameters()]
            # One optimiser minimises L_trans + λ·L_pred over G, F and P; P has its own group.
            # Adam is invariant to a constant loss scale, so the λ in front of L_pred does not
            # shrink P's steps: P trains at lr_predictor (1e-3), the translator at 2e-4.
            gen = torch.optim.Adam([{"params": translator, "lr": cfg.lr_translator},
                                    {"params": self.nets["P"].parameters(), "lr": cfg.lr_predictor}],
                                   betas=betas)
            critics = list(self.nets["D_t"].parameters()) + list(self.nets["D_s"].parameters())
            disc = torch.optim.Adam(critics, lr=cfg.lr_translator, betas=betas)
            optimizers = {"gen": gen, "disc": disc}
        schedulers = {k: linear_decay(o, cfg.epochs, cfg.decay_start_epoch) for k, o in optimizers.items()}
        return optimizers, schedulers

    # -- data ---------------------------------------------------------------------------------

    @property
    def data(self) -> TrainingData:
        if self._data is None:
            self._data = load_training_data(self.cfg, progress=self._bar if self.progress else None)
        return self._data

    def _bar(self, iterable, **kwargs):
        from tqdm.auto import tqdm
        return tqdm(iterable, leave=False, disable=not self.progress, **kwargs)

    def _init_samplers(self) -> None:
        cfg, data = self.cfg, self.data
        bs = cfg.batch_size if cfg.kind == "MIX" else cfg.predictor_batch_size
        self.samplers = {"ct": BatchSampler(len(data.ct_train), bs, self.generator)}
        for k in cfg.sources if cfg.kind == "MIX" else ():
            self.samplers[k] = BatchSampler(len(data.sources[k]), bs, self.generator)
        if cfg.loader != "memory":
            self._init_loaders(bs)

    def _init_loaders(self, batch_size: int) -> None:
        """Per-batch resizing from native resolution (DALI or torch), sharded by rank under
        torch.distributed. Their sample order restarts from the seed on resume."""
        from ..data.loaders import Augment, SliceLoader
        cfg = self.cfg
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        sets = {"ct": self.data.ct_train, **(self.data.sources if cfg.kind == "MIX" else {})}
        augment = Augment(flip=cfg.augment_flip, crop_min=cfg.augment_crop_min)
        self.loaders = {
            name: SliceLoader(s.native, s.ages, cfg.image_size, batch_size, augment, seed=cfg.seed + 7 * i,
                              backend=cfg.loader, device=str(self.device), rank=rank, world_size=world)
            for i, (name, s) in enumerate(sets.items())}
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
        bs = self.cfg.batch_size if self.cfg.kind == "MIX" else self.cfg.predictor_batch_size
        return max(1, math.ceil(max(sizes) / bs))

    def _scale(self, ages: torch.Tensor) -> torch.Tensor:
        return (ages - self.age_mean) / self.age_std

    def _batch(self, slices, name: str):
        if self.loaders:
            batch = next(self._loader_iters[name])  # made ahead by the loader's prefetch thread
            return batch.images, self._scale(batch.ages)
        idx = self.samplers[name].next()
        images = slices.images[idx].to(self.device, non_blocking=True)
        if self.cfg.augment_flip:
            flip = torch.rand(len(idx), generator=self.generator) < 0.5
            images = torch.where(flip.to(self.device)[:, None, None, None], images.flip(-1), images)
        if self.cfg.augment_shift:
            images = random_shift(images, self.cfg.augment_shift, self.generator)
        return images, self._scale(slices.ages[idx]).to(self.device)

    # -- training -----------------------------------------------------------------------------

    def fit(self, resume: bool = False) -> list[dict]:
        """Train until cfg.epochs, checkpointing atomically after every epoch. With resume=True a
        checkpoint in cfg.out_dir is loaded first and the run continues from it."""
        ckpt = Path(self.cfg.out_dir) / CHECKPOINT_NAME
        if resume and ckpt.exists():
            self._load_state(read_checkpoint(ckpt))
        if not self.samplers:
            ct = self.data.ct_train
            self.age_mean, self.age_std = float(ct.ages.mean()), max(float(ct.ages.std()), 1.0)
            self._init_samplers()
        elif self.cfg.loader != "memory" and not self.loaders:
            self._init_loaders(self.samplers["ct"].batch_size)
        steps = self.steps_per_epoch()
        epochs = self._bar(range(self.epoch, self.cfg.epochs), desc=f"{self.cfg.setting} epochs",
                           initial=self.epoch, total=self.cfg.epochs)
        for _ in epochs:
            record = self._train_epoch(steps)
            self.history.append(record)
            self.epoch += 1
            for s in self.schedulers.values():
                s.step()
            self.save(ckpt)
        self.close_loaders()
        return self.history

    def _train_epoch(self, steps: int) -> dict:
        for net in self._modules():
            net.train()
        totals: dict[str, float] = {}
        start = time.perf_counter()
        for _ in range(steps):
            parts = self._train_step()
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + v
        seconds = time.perf_counter() - start
        record = {"epoch": self.epoch, "steps": steps, "seconds": seconds,
                  "lr": [g["lr"] for o in self.optimizers.values() for g in o.param_groups]}
        record.update({k: v / steps for k, v in totals.items()})
        if any(not math.isfinite(v) for k, v in record.items() if isinstance(v, float)):
            raise DuiitError(f"training diverged at epoch {self.epoch}: {record}")
        return record

    def _train_step(self) -> dict:
        data = self.data
        x, r_x = self._batch(data.ct_train, "ct")
        if self.cfg.kind != "MIX":
            return predictor_step(self.nets["P"], self.optimizers["pred"], x, r_x)
        sources = {k: SourceBatch(*self._batch(data.sources[k], k)) for k in self.cfg.sources}
        return joint_step(self.nets, self.optimizers, self.pools, x, r_x, sources, self.cfg, self.cfg.backend)

    def _modules(self) -> list[nn.Module]:
        return list(self.nets.values())

    # -- inference ----------------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        """Ages in years for (N, 1, S, S) CT slices in [-1, 1]."""
        P = self.nets["P"]
        P.eval()
        out = [P(images[i:i + batch_size].to(self.device)).squeeze(1).float().cpu()
               for i in range(0, len(images), batch_size)]
        return torch.cat(out) * self.age_std + self.age_mean

    def evaluate(self, split: str = "test") -> dict:
        """Slice-level MSE/MAE in years² / years on a CT split, and MSE of patient-mean predictions."""
        slices = self.data.split(split)
        pred = self.predict(slices.images)
        err = pred - slices.ages
        per_patient = []
        for pid in slices.patients:
            mask = torch.from_numpy(slices.patient_ids == pid)
            per_patient.append(float(pred[mask].mean() - slices.ages[mask][0]))
        return {"mse": float(err.square().mean()), "mae": float(err.abs().mean()),
                "patient_mse": float(np.mean(np.square(per_patient))),
                "n_slices": len(slices), "n_patients": len(per_patient), "split": self.split_protocol}

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
        G = self.nets["G"][source]
        G.eval()
        out = [G(x[i:i + batch_size].to(self.device)).float().cpu() for i in range(0, len(x), batch_size)]
        return torch.cat(out)

    # -- checkpoints --------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "config": self.cfg.to_dict(), "epoch": self.epoch, "history": self.history,
            "age_mean": self.age_mean, "age_std": self.age_std,
            "nets": {k: v.state_dict() for k, v in self.nets.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "pools": {side: {k: p.state_dict() for k, p in pools.items()} for side, pools in self.pools.items()},
            "pool_rng": {side: {k: p.generator.get_state() for k, p in pools.items()}
                         for side, pools in self.pools.items()},
            "samplers": {k: s.state_dict() for k, s in self.samplers.items()},
            "rng": {"generator": self.generator.get_state(), "torch": torch.get_rng_state()},
        }

    def _load_state(self, state: dict) -> None:
        self.epoch, self.history = state["epoch"], list(state["history"])
        self.age_mean, self.age_std = state["age_mean"], state["age_std"]
        for k, v in state["nets"].items():
            self.nets[k].load_state_dict(v)
        for k, v in state["optimizers"].items():
            self.optimizers[k].load_state_dict(v)
        for k, v in state["schedulers"].items():
            self.schedulers[k].load_state_dict(v)
        for side, pools in self.pools.items():
            for k, pool in pools.items():
                pool.load_state_dict(state["pools"][side][k], self.device)
                pool.generator.set_state(state["pool_rng"][side][k])
        if state["samplers"]:
            self._init_samplers()  # draws from self.generator: restore its state afterwards
            for k, s in state["samplers"].items():
                self.samplers[k].load_state_dict(s)
        self.generator.set_state(state["rng"]["generator"])
        torch.set_rng_state(state["rng"]["torch"])

    def save(self, path) -> Path:
        """Write a complete checkpoint atomically (temporary file, then rename)."""
        path = Path(path)
        with atomic_path(path) as tmp:
            torch.save(self.state_dict(), tmp)
        return path

    @classmethod
    def load(cls, path, data: Optional[TrainingData] = None, progress: bool = False) -> "Trainer":
        path = Path(path)
        state = read_checkpoint(path)
        cfg = TrainConfig.from_dict(state["config"])
        trainer = cls(cfg, data=data, progress=progress)
        trainer._load_state(state)
        return trainer
