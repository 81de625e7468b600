"""The fast path of a run: torch.compile, bf16 autocast, channels_last and fused Adam.

Each switch is "auto" by default and resolved once per run from the device. What was resolved is
stored in the checkpoint. The eager fp32 path stays the reference: tests compare them step for step.

Measured (bench/RESULTS.md): on this project's 2-core AVX2 CPU (size M) eager with the C++ fused
ops ran 1.12× the eager reference, compiled reference ops 1.07×, compiled C++ ops 1.02×, after a
155–224 s cold compile; bf16 ~14× slower than fp32. On an H100 at the paper's size (256², 16 pairs)
compiled bf16 ran 3.52× the eager fp32 reference with the reference ops and 3.41× with the Triton
instance norm (its NHWC kernels), eager bf16 with the Triton ops 1.80×. So "auto" on CPU is eager fp32
with the fused ops; on CUDA compiled bf16 channels_last, and a compiled step takes the reference ops
on either device: Inductor fuses them with the padding and activations around them.
"""
from __future__ import annotations

import contextlib
import dataclasses

import torch

from .. import ops
from .networks import predictor_outputs
from .step import GeneratorLosses, StepFunctions, TranslatorRegularisers, discriminator_loss, \
    generator_predictor_loss, squared_error_sum, translation_loss

@dataclasses.dataclass(frozen=True)
class FastPath:
    compile: bool
    bf16: bool
    channels_last: bool
    fused_optimizer: bool
    backend: str           # the op backend the run's modules use

    def describe(self) -> str:
        return (f"{'compiled' if self.compile else 'eager'}, {'bf16' if self.bf16 else 'fp32'}, "
                f"{'channels_last' if self.channels_last else 'NCHW'}, "
                f"{'fused' if self.fused_optimizer else 'foreach'} Adam, {self.backend} ops")


def _switch(value: str, auto: bool) -> bool:
    return {"on": True, "off": False}.get(value, auto)


def device_defaults(cfg, device: torch.device) -> dict:
    """The switches that depend on the device only (needed before the optimisers are built).
    bf16 is automatic on CUDA only: on this project's AVX2 CPUs (no native bf16) a bf16 step was
    measured ~14× slower than fp32 (bench/RESULTS.md)."""
    cuda = device.type == "cuda"
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and cuda and torch.cuda.is_bf16_supported())
    return {"bf16": bf16, "channels_last": _switch(cfg.channels_last, auto=cuda),
            "fused_optimizer": cfg.fused_optimizer and device.type in ("cuda", "cpu")}


def resolve_fast_path(cfg, device: torch.device) -> FastPath:
    """Everything resolved. Compiled, backend "auto" becomes the reference decomposition, which
    Inductor fuses with the padding and activations around it: on the CPU the opaque C++ op measured
    1.02× vs 1.07× for compiled reference ops; on an H100 the Triton instance norm (a triton_op,
    visible to Inductor) 3.41× vs 3.52× (bench/RESULTS.md). An explicit backend is kept."""
    compile_ = _switch(cfg.compile, auto=device.type == "cuda")
    backend = cfg.backend
    if compile_ and backend == "auto":
        backend = "reference"
    return FastPath(compile=compile_, backend=backend, **device_defaults(cfg, device))


def _autocast(device: torch.device, bf16: bool):
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def build_step_functions(nets, cfg, fast: FastPath, device: torch.device, label_scale: float = 1.0,
                         reader=None, replicas: int = 1) -> StepFunctions:
    """The step's forward+loss functions under the fast path: each runs under bf16 autocast where
    chosen (losses and their sums in fp32), is compiled with fullgraph=True (a graph break is an
    error, not a silent slowdown) and is called under the run's op backend (ops.use_backend,
    entered outside the compiled region). Optimiser steps, image pools and logging stay outside."""
    def under_autocast(fn):
        def run(*args):
            with _autocast(device, fast.bf16):
                return fn(*args)
        return run

    def fast_version(fn):
        fn = under_autocast(fn)
        return ops.under_backend(torch.compile(fn, fullgraph=True, dynamic=False) if fast.compile else fn,
                                 fast.backend)

    terms = TranslatorRegularisers.of(cfg)

    def gen_parts(x, r_x, sources):
        losses = generator_predictor_loss(nets, x, r_x, sources, cfg.lambda_cyc, cfg.lambda_pred,
                                          label_scale, reader, replicas, terms)
        return losses.total, losses.trans, losses.pred, losses.feedback, losses.fakes

    gen_fast = fast_version(gen_parts)
    gen_eager = ops.under_backend(under_autocast(gen_parts), fast.backend)
    trans_fn = fast_version(lambda x, sources: translation_loss(nets, x, sources, cfg.lambda_cyc, terms))
    critic_fn = fast_version(lambda x, sources, pooled: discriminator_loss(nets, x, sources, pooled, terms))
    pred_fn = fast_version(lambda images, targets, counts: squared_error_sum(predictor_outputs(nets, images, counts),
                                                                             targets, label_scale))
    return StepFunctions(lambda x, r_x, sources: GeneratorLosses(*gen_fast(x, r_x, sources)), trans_fn,
                         critic_fn, pred_fn, lambda x, r_x, sources: GeneratorLosses(*gen_eager(x, r_x, sources)))
