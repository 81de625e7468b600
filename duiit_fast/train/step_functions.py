"""The forward + loss halves of the three kinds of step, built once per run under its fast path:
eager fp32 with the run's op backend is the same builder with every switch off (EAGER).

Each function runs under bf16 autocast where chosen (losses and their sums in fp32), is compiled
with fullgraph=True where chosen (a graph break is an error, not a silent slowdown) and is called
under the run's op backend (ops.use_backend, entered outside the compiled region). Optimiser steps,
image pools and logging stay outside (train/step.py).
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Optional

import torch

from .. import ops
from ..models.generator import residual_blocks_as_regions
from .networks import predictor_outputs
from .step import (GeneratorLosses, discriminator_loss, generator_predictor_loss, sample_weights, squared_error_sum,
                   translation_loss)

# Inductor settings of a compiled step with block regions. With buffer reuse on, Inductor reuses the
# memory of buffers a region call returns as aliases (its input, its weights) and writes a
# channels-last weight copy into a parameter: a network whose blocks are regions computed wrong
# values when called twice (relative error 0.15-0.41) and its weights changed (torch 2.14.1 CPU,
# docs/torch-nested-region-bug.md). Without buffer reuse the joint step at M matched eager to 6e-7.
REGION_COMPILE_OPTIONS = (("allow_buffer_reuse", False),)


@dataclasses.dataclass(frozen=True)
class FastPath:
    """How a run's steps execute, every switch resolved (train/fast.py resolves them from the config)."""
    compile: bool
    bf16: bool
    channels_last: bool
    fused_optimizer: bool
    backend: Optional[str]  # the op backend the run enters (None: leave the ambient one)
    regions: bool = False   # compiled: each residual block one nested compile region
    region_options: tuple = REGION_COMPILE_OPTIONS   # Inductor options with regions, as (key, value) pairs

    def describe(self) -> str:
        compiled = "compiled" + (" (block regions)" if self.regions else "")
        return (f"{compiled if self.compile else 'eager'}, {'bf16' if self.bf16 else 'fp32'}, "
                f"{'channels_last' if self.channels_last else 'NCHW'}, "
                f"{'fused' if self.fused_optimizer else 'foreach'} Adam, {self.backend} ops")


EAGER = FastPath(compile=False, bf16=False, channels_last=False, fused_optimizer=False, backend=None)


class StepFunctions:
    """The step's forward + loss functions, as plain callables."""

    def __init__(self, generator_loss, translation_loss_fn, critic_loss, predictor_loss, eager_generator_loss):
        self.generator_loss = generator_loss              # (x, r_x, sources) → GeneratorLosses
        self.translation_loss = translation_loss_fn       # (x, sources) → (L_trans, fakes)
        self.critic_loss = critic_loss                    # (x, sources, pooled) → (total, d_t, d_s)
        self.predictor_loss = predictor_loss              # (images, targets, counts) → Σ squared error, years²
        self.eager_generator_loss = eager_generator_loss  # for the gradient share's double backward


def _autocast(device: Optional[torch.device], bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def build_step_functions(nets, cfg, fast: FastPath = EAGER, device: Optional[torch.device] = None,
                         label_scale: float = 1.0, reader=None, replicas: int = 1,
                         extra_weight: float = 1.0) -> StepFunctions:
    """The step functions of `nets` under `fast` (`device`: where the run computes; needed for bf16
    and compiling). `reader`: G's feedback from a CT reader (pred_feedback = ct_reader); `replicas`:
    ranks under DDP (a sum over the global batch); `extra_weight`: P's loss weight on the extra slices of a
    predictor-only step (the method's extra_weight: NAIVE's naive_source_weight)."""
    def under_autocast(fn):
        def run(*args):
            with _autocast(device, fast.bf16):
                return fn(*args)
        return run

    def compiled(fn):
        options = dict(fast.region_options) if fast.regions else None
        compiled_fn = torch.compile(fn, fullgraph=True, dynamic=False, options=options)

        def run(*args):
            with residual_blocks_as_regions(fast.regions):   # entered outside the compiled region
                return compiled_fn(*args)
        return run

    def fast_version(fn):
        fn = under_autocast(fn)
        return ops.under_backend(compiled(fn) if fast.compile else fn, fast.backend)

    if fast.compile:
        # A graph input, not a constant: a Python float closure is baked into the compiled graph, so
        # each dataset's age std (another per cohort) missed Inductor's cache and recompiled the
        # joint graph: 37 s instead of 4 s from a warm cache at the experiment's size (RESULTS.md).
        label_scale = torch.tensor(float(label_scale), device=device)

    def gen_parts(x, r_x, sources):
        losses = generator_predictor_loss(nets, x, r_x, sources, cfg.lambda_cyc, cfg.lambda_pred,
                                          label_scale, reader, replicas, cfg.lambda_identity,
                                          cfg.predictor_source_weight)
        return losses.total, losses.trans, losses.pred, losses.feedback, losses.fakes

    gen_fast = fast_version(gen_parts)
    gen_eager = ops.under_backend(under_autocast(gen_parts), fast.backend)
    trans_fn = fast_version(lambda x, sources: translation_loss(nets, x, sources, cfg.lambda_cyc, cfg.lambda_identity))
    critic_fn = fast_version(lambda x, sources, pooled: discriminator_loss(nets, x, sources, pooled))
    def pred_parts(images, targets, counts):
        # At 1 (every method's default) no weights at all: the recorded runs' arithmetic, bit for bit.
        weights = None if extra_weight == 1.0 else sample_weights(counts, extra_weight, images.device)
        return squared_error_sum(predictor_outputs(nets, images, counts), targets, label_scale, weights)

    pred_fn = fast_version(pred_parts)
    return StepFunctions(lambda x, r_x, sources: GeneratorLosses(*gen_fast(x, r_x, sources)), trans_fn,
                         critic_fn, pred_fn, lambda x, r_x, sources: GeneratorLosses(*gen_eager(x, r_x, sources)))
