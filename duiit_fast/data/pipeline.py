"""The batch pipeline's shared parts: one sampler, one augmentation spec, the memory engine.

Two engines make training batches, each a `Batch` (images, ages, indices, resume state):
  * memory (`MemoryEngine`): slices already at the training size in one tensor (the phantom and
    cached datasets); sampling and augmentation draw from the run's own generator, so a checkpoint
    of that generator and the sampler positions resumes exactly;
  * torch / dali (`loaders.SliceLoader`): native-resolution slices, cropped and resized per batch,
    each loader with generators of its own, its state carried by every batch it makes.
Both sample with `BatchSampler` and augment by the same `Augment`: flip, square crop (a fraction of
the side, then resized back), shift. Ages stay in years here; the trainer scales them in one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..errors import DuiitError
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    flip: bool = True           # horizontal flip with probability 1/2
    crop_min: float = 1.0       # the kept square side is U[crop_min, 1] of the side (1: no crop)
    shift: int = 0              # translation by up to this many pixels after resizing (air-padded)


@dataclass
class Batch:
    images: torch.Tensor        # (B, 1, S, S) float32 in [-1, 1]
    ages: torch.Tensor          # (B,) in years
    indices: torch.Tensor       # (B,) positions in the slice list
    state: Optional[dict] = None  # the loader's sampling state right after this batch was drawn:
                                  # a checkpoint stores the consumed batch's, so a resume continues
                                  # exactly there although the prefetch thread ran ahead


class BatchSampler:
    """Endless shuffled batches over n slices; a new permutation after each pass. Under
    torch.distributed rank r of w takes every w-th index of each permutation. The first
    permutation is drawn at construction (the recorded runs' order of draws from a shared
    generator depends on it)."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        if n < world_size or batch_size < 1:   # next() would wait forever for an index
            raise DuiitError(f"cannot draw batches of {batch_size} from {n} slice(s) over {world_size} process(es)")
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.rank, self.world_size = rank, world_size
        self.order = self._permutation()
        self.pos = 0

    def _permutation(self) -> torch.Tensor:
        return torch.randperm(self.n, generator=self.generator)[self.rank::self.world_size]

    def next(self) -> torch.Tensor:
        picks = []
        need = self.batch_size
        while need > 0:
            if self.pos >= len(self.order):
                self.order = self._permutation()
                self.pos = 0
            take = self.order[self.pos:self.pos + need]
            picks.append(take)
            self.pos += len(take)
            need -= len(take)
        return torch.cat(picks)

    def state_dict(self) -> dict:
        return {"order": self.order, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.order, self.pos = state["order"], state["pos"]


def draw_shifts(n: int, max_shift: int, generator: torch.Generator) -> list:
    """Per image (dy, dx) in [0, 2·max_shift]: the offset into the air-padded image."""
    return torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator).tolist()


def apply_shifts(images: torch.Tensor, offsets, max_shift: int) -> torch.Tensor:
    """Translate each image by its offset; uncovered pixels become air (-1)."""
    _, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4, value=-1.0)
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to max_shift pixels in x and y; uncovered pixels become air (-1)."""
    return apply_shifts(images, draw_shifts(len(images), max_shift, generator), max_shift)


def sample_boxes(shapes, augment: Augment, generator: torch.Generator) -> np.ndarray:
    """Per sample [y0, x0, y1, x1] in pixels; x0 > x1 encodes a horizontal flip."""
    boxes = np.zeros((len(shapes), 4), dtype=np.int64)
    u = torch.rand(len(shapes), 4, generator=generator).numpy()
    for i, (h, w) in enumerate(shapes):
        frac = augment.crop_min + (1.0 - augment.crop_min) * u[i, 0]
        ch, cw = max(1, int(round(h * frac))), max(1, int(round(w * frac)))
        y0, x0 = int(u[i, 1] * (h - ch + 1)), int(u[i, 2] * (w - cw + 1))
        y0, x0 = min(y0, h - ch), min(x0, w - cw)
        x_start, x_end = (x0 + cw, x0) if augment.flip and u[i, 3] < 0.5 else (x0, x0 + cw)
        boxes[i] = (y0, x_start, y0 + ch, x_end)
    return boxes


def resize_box(image: torch.Tensor, box, size: int) -> torch.Tensor:
    """Crop one (H, W) slice to its box (flipping when x0 > x1) and resize to (1, size, size)."""
    y0, xa, y1, xb = (int(v) for v in box)
    t = image[y0:y1, min(xa, xb):max(xa, xb)][None, None]
    if xa > xb:
        t = t.flip(-1)
    shrinking = t.shape[-1] > size or t.shape[-2] > size
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking)[0]


class MemoryEngine:
    """Batches from slices held at the training size: its sampler picks, then flip, crop and shift
    draw from `generator` in that order (flip and shift exactly as the recorded runs drew them)."""

    def __init__(self, sampler: BatchSampler, augment: Augment, generator: torch.Generator, device):
        self.sampler, self.augment, self.generator = sampler, augment, generator
        self.device = torch.device(device)

    def next_batch(self, images: torch.Tensor, ages: torch.Tensor) -> Batch:
        idx = self.sampler.next()
        # non_blocking: a blocking host→device copy waits for the stream, i.e. for the previous step.
        out = images[idx].to(self.device, non_blocking=True)
        a = self.augment
        if a.flip:
            flip = torch.rand(len(idx), generator=self.generator) < 0.5
            out = torch.where(flip.to(self.device, non_blocking=True)[:, None, None, None], out.flip(-1), out)
        if a.crop_min < 1.0:
            # Flips were drawn above: the boxes only crop (a no-flip copy of the spec).
            boxes = sample_boxes([out.shape[-2:]] * len(idx), Augment(flip=False, crop_min=a.crop_min),
                                 self.generator)
            out = torch.stack([resize_box(img[0], box, out.shape[-1]) for img, box in zip(out, boxes)])
        if a.shift:
            out = random_shift(out, a.shift, self.generator)
        return Batch(out, ages[idx].to(self.device, non_blocking=True), idx)
