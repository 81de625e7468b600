"""The fused ops, one module each, read the same way: reference → contract → C++ op → Triton op →
public function.

    instance_norm.py   instance_norm_act: act(IN(x)·w + b), or residual + IN(x)·w + b
    losses.py          lsgan_loss, l1_loss
    dispatch.py        backend names, what is installed, and the one resolver (per-op "auto" table)
    reference.py       the eager references gathered: the oracle of tests and benchmarks

Backends (the same contract, forward and backward; docs/ops.md): reference (eager PyTorch, any
device and dtype), triton (CUDA tensors; CPU ones under TRITON_INTERPRET=1 set at process start),
cpp (duiit_fast._C, CPU tensors), auto (dispatch.AUTO). `backend=None` takes the backend of the
enclosing `use_backend` block (a run enters its own once: models and loss functions carry none),
else auto. Every fused implementation is a torch.library op with a fake implementation and
registered autograd, so it works under torch.compile(fullgraph=True).
"""
from __future__ import annotations

import torch

from . import dispatch, instance_norm as _instance_norm, losses as _losses, reference
from .dispatch import (BACKENDS, cpp_available, fused_backend, resolve, run_backend, triton_available,
                       triton_interpreting, under_backend, use_backend)
from .instance_norm import instance_norm_act
from .losses import l1_loss, lsgan_loss

__all__ = ["BACKENDS", "cpp_available", "dispatch", "fused_backend", "instance_norm_act", "l1_loss",
           "lsgan_loss", "reference", "register_triton_ops", "resolve", "run_backend", "triton_available",
           "triton_interpreting", "under_backend", "use_backend"]


def register_triton_ops() -> None:
    """Register the Triton ops of every op (once)."""
    _instance_norm.triton_ops()
    _losses.triton_ops()


# A process that can run Triton registers its ops at import, outside any torch.compile trace
# (is_available initialises no CUDA context: a later fork stays safe).
if triton_available() and (triton_interpreting() or torch.cuda.is_available()):
    register_triton_ops()
