"""Loader throughput vs what the training step consumes, at 256² from mixed native sizes.

Loader: slices/s delivered as (B, 1, 256, 256) batches from CT 650², MRI 256² and PET 128² slices
(one third each), with flips and random crops, for the torch fallback and DALI. Consumption: one
joint DUIIT step with the paper's models (9-block ngf-64 generators, 70×70 PatchGANs, ResNet50)
eats batch CT + batch MRI slices; its slices/s is measured on the same device in the same run.
"""

import numpy as np
import pytest
import torch

from duiit_fast.data.loaders import Augment, SliceLoader, dali_available

from conftest import device_name

NATIVE = (650, 256, 128)


@pytest.fixture(scope="module")
def mixed_native():
    rng = np.random.default_rng(0)
    slices = [np.tanh(rng.standard_normal((s, s))).astype(np.float32) for s in NATIVE for _ in range(32)]
    return slices, np.linspace(20, 90, len(slices))


@pytest.mark.parametrize("backend", ["torch", pytest.param("dali", marks=pytest.mark.skipif(
    not dali_available(), reason="nvidia-dali is not installed"))])
def test_loader_throughput(benchmark, device, mixed_native, backend):
    slices, ages = mixed_native
    loader = SliceLoader(slices, ages, 256, 16, Augment(flip=True, crop_min=0.85), seed=0,
                         backend=backend, device=str(device))
    loader.next_batch()
    benchmark.extra_info.update(device=device_name(device), backend=backend, batch=16)
    benchmark.pedantic(loader.next_batch, rounds=10, warmup_rounds=1)
    benchmark.extra_info["slices/s"] = round(16 / benchmark.stats.stats.median, 1)


def test_joint_step_consumption(benchmark, device):
    from duiit_fast.config import TrainConfig
    from duiit_fast.train.step import SourceBatch, joint_step
    from duiit_fast.train.step_functions import build_step_functions
    from duiit_fast.train.trainer import Trainer

    from conftest import synchronize
    batch = 2 if device.type == "cpu" else 16
    cfg = TrainConfig(setting="MIX-CT-MRI", image_size=256, batch_size=batch, device=device.type)
    trainer = Trainer(cfg, data=None, progress=False)  # models only: batches are synthetic
    x = torch.rand(batch, 1, 256, 256, device=device) * 2 - 1
    r = torch.randn(batch, device=device)
    sources = {"mri": SourceBatch(torch.rand_like(x) * 2 - 1, r)}

    fns = build_step_functions(trainer.nets, cfg)

    def step():
        joint_step(trainer.nets, trainer.optimizers, trainer.pools, x, r, sources, cfg, fns)
        synchronize(device)
    step()
    benchmark.extra_info.update(device=device_name(device), batch=batch)
    benchmark.pedantic(step, rounds=2 if device.type == "cpu" else 10, warmup_rounds=0)
    benchmark.extra_info["slices/s"] = round(2 * batch / benchmark.stats.stats.median, 2)
