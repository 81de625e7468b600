"""Mixed-resolution batch loaders: DALI where installed (GPU operators on CUDA, CPU otherwise),
and a torch fallback with the same preprocessing.

Both take native-resolution slices already mapped to [-1, 1] (CT 650², MRI 256², PET 128² may
share a batch), and per sample apply one augmentation drawn on the host from a seeded torch
Generator: an integer-pixel square crop (a random fraction of the side, at a random offset) and a
horizontal flip; the crop is then resized to the training size with an antialiased linear filter,
and shifted (pipeline.Augment). Drawing the augmentation once on the host is what makes the two
paths comparable batch for batch (DALI reads a reversed ROI as a flip). Sharding: rank r of w takes every w-th slice of each
epoch's permutation.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator, Optional

import numpy as np
import torch

from .pipeline import Augment, Batch, BatchSampler, apply_shifts, draw_shifts, resize_box, sample_boxes

__all__ = ["Augment", "Batch", "SliceLoader", "dali_available", "resize_box_torch", "sample_boxes"]


def dali_available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


def resize_box_torch(image: np.ndarray, box, size: int) -> torch.Tensor:
    """resize_box for a NumPy slice (the loaders hold native slices as arrays)."""
    return resize_box(torch.from_numpy(image), box, size)


class SliceLoader:
    """Endless augmented batches from native-resolution slices; `backend` "dali" or "torch"."""

    def __init__(self, slices: list, ages, size: int, batch_size: int, augment: Augment = Augment(),
                 seed: int = 0, backend: str = "auto", device: str = "cpu", rank: int = 0,
                 world_size: int = 1, prefetch: int = 2, num_threads: int = 2):
        if backend == "auto":
            backend = "dali" if dali_available() else "torch"
        if backend == "dali" and not dali_available():
            raise RuntimeError("backend 'dali' needs nvidia-dali (pip install nvidia-dali-cuda130)")
        if backend not in ("dali", "torch"):
            raise ValueError(f"backend must be dali, torch or auto, got {backend!r}")
        self.slices = [np.ascontiguousarray(s, dtype=np.float32) for s in slices]
        self.ages = torch.as_tensor(np.asarray(ages, dtype=np.float32))
        self.size, self.batch_size, self.augment = size, batch_size, augment
        self.backend, self.device = backend, torch.device(device)
        self.sampler = BatchSampler(len(self.slices), batch_size, torch.Generator().manual_seed(seed), rank, world_size)
        # The permutation is shared by the ranks (each takes its shard of it); the augmentation
        # draws are each rank's own, else every rank would flip and crop its images alike.
        self.box_generator = torch.Generator().manual_seed(seed + 1 + 1_000_003 * rank)
        self._dali = _DaliResize(size, batch_size, self.device, num_threads) if backend == "dali" else None
        self._queue: "queue.Queue" = queue.Queue(maxsize=max(1, prefetch))
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()

    def _plan(self):
        """Everything random about the next batch, drawn on the host: indices, boxes, shifts."""
        idx = self.sampler.next().numpy()
        boxes = sample_boxes([self.slices[i].shape for i in idx], self.augment, self.box_generator)
        shifts = draw_shifts(len(idx), self.augment.shift, self.box_generator) if self.augment.shift else None
        return idx, boxes, shifts, self.state_dict()

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict(), "order_rng": self.sampler.generator.get_state(),
                "box_rng": self.box_generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Continue after the batch whose `state` this is; only before iteration has started."""
        if self._thread is not None:
            raise RuntimeError("load_state_dict must come before the loader is iterated")
        if "pending" in state:   # written before the loaders shared BatchSampler: the rest of a permutation
            self.sampler.load_state_dict({"order": state["pending"].clone(), "pos": 0})
        else:
            self.sampler.load_state_dict(state["sampler"])
        self.sampler.generator.set_state(state["order_rng"])
        self.box_generator.set_state(state["box_rng"])

    def _make(self, idx, boxes, shifts=None, state=None) -> Batch:
        if self._dali is not None:
            images = self._dali.run([self.slices[i] for i in idx], boxes)
        else:
            images = torch.stack([resize_box_torch(self.slices[i], b, self.size) for i, b in zip(idx, boxes)])
            images = images.to(self.device)
        if shifts is not None:
            images = apply_shifts(images, shifts, self.augment.shift)
        return Batch(images, self.ages[idx].to(self.device), torch.as_tensor(idx), state)

    def next_batch(self) -> Batch:
        """The next batch, made in this thread (no prefetch)."""
        return self._make(*self._plan())

    def __iter__(self) -> Iterator[Batch]:
        # A producer thread keeps `prefetch` batches ready (torch and DALI release the GIL).
        if self._stop.is_set():
            raise RuntimeError("this loader was closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._produce, daemon=True)
            self._thread.start()
        while True:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:   # a producer that died without a word must not leave us waiting
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the data loader's thread stopped without delivering a batch") from None
                continue
            if isinstance(item, BaseException):
                raise item
            yield item

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                batch = self.next_batch()
                while not self._stop.is_set():
                    try:
                        self._queue.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # surfaced in the consumer
            self._queue.put(exc)

    def close(self) -> None:
        """Stop the prefetch thread (it holds the slices); iterating again is an error."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _DaliResize:
    """A DALI pipeline: external slices and ROIs in, (B, 1, S, S) float32 out."""

    def __init__(self, size: int, batch_size: int, device: torch.device, num_threads: int):
        from nvidia.dali import fn, pipeline_def
        self.device = device
        self.pending = None
        on_gpu = device.type == "cuda"

        @pipeline_def(batch_size=batch_size, num_threads=num_threads,
                      device_id=(device.index or 0) if on_gpu else None, prefetch_queue_depth=1)
        def pipeline():
            images, starts, ends = fn.external_source(source=self._feed, num_outputs=3, batch=True,
                                                      layout=["CHW", None, None], dtype=None)
            if on_gpu:
                images = images.gpu()
            # A ROI with start > end flips that axis: the host-drawn flip rides on the ROI.
            return fn.resize(images, size=[size, size], roi_start=starts, roi_end=ends,
                             roi_relative=False, antialias=True)

        self.pipe = pipeline()
        self.pipe.build()

    def _feed(self):
        return self.pending

    def run(self, slices, boxes) -> torch.Tensor:
        boxes = np.asarray(boxes, dtype=np.float32)
        self.pending = ([s[None] for s in slices], [b[:2].copy() for b in boxes], [b[2:].copy() for b in boxes])
        (out,) = self.pipe.run()
        if self.device.type == "cuda":
            from nvidia.dali.plugin.pytorch import feed_ndarray
            tensor = out.as_tensor()
            result = torch.empty(tensor.shape(), dtype=torch.float32, device=self.device)
            feed_ndarray(tensor, result, cuda_stream=torch.cuda.current_stream(self.device))
            return result
        return torch.from_numpy(np.array(out.as_tensor()))
