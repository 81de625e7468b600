"""The op layer: one function per fused op, dispatching to an implementation by backend.

The package: this module (the public functions and the choice of backend), `contract` (codes,
output shapes, the autograd formula), `reference` (eager PyTorch: the oracle), `cpp_backend`
(duiit_fast._C) and `triton_backend` (duiit_fast.kernels).

Backends (same contract, forward and backward; see docs/ops.md):
  reference  eager PyTorch (duiit_fast.ops.reference), any device and dtype: the oracle;
  triton     Triton kernels (duiit_fast.kernels): CUDA tensors, or CPU tensors when
             TRITON_INTERPRET=1 was set before the process started (tests);
  cpp        C++/OpenMP kernels of duiit_fast._C: CPU tensors;
  auto       triton on CUDA, cpp on CPU; reference where those are missing. The losses take
             the reference on CUDA under auto (loss_backend: measured faster there).
`backend=None` takes the backend of the enclosing `use_backend` block (a run enters its own once:
models and loss functions carry none), else `set_default_backend`, else DUIIT_BACKEND from the
environment, else "auto". Every fused implementation is a torch.library op with a fake
implementation and registered autograd, so it works under torch.compile(fullgraph=True).
Inputs of any layout work. The Triton instance norm keeps a channels_last activation channels_last
(its NHWC kernels; output channels_last, as the convolution around it wants); every other input, and
every input of the C++ ops, is copied to contiguous NCHW first.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from typing import Optional

import torch
from torch import Tensor

from . import cpp_backend, reference

from ..config import BACKENDS   # noqa: E402  (the names the configuration accepts)
_default_backend: Optional[str] = None
_C = cpp_backend._C
_C_IMPORT_ERROR = cpp_backend.IMPORT_ERROR


def cpp_available() -> bool:
    return _C is not None


# Probed once at import (find_spec does not import triton): resolve_backend runs on every op
# call, and a plain constant is also what torch.compile traces without complaint.
_TRITON_AVAILABLE = importlib.util.find_spec("triton") is not None


def triton_available() -> bool:
    return _TRITON_AVAILABLE


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _triton_backend():
    """The Triton backend module, registered on first need. Registering its triton_ops imports
    torch._dynamo and torch._inductor, ~3 s of a CPU-only process's start, for ops a CPU process
    cannot run outside the interpreter (with torchvision imported lazily too, `duiit train` of a
    tiny run on the 2-core CPU went from 9.5 s to 6.4 s)."""
    from . import triton_backend
    return triton_backend


# A process that can run Triton registers its ops at import, outside any torch.compile trace
# (is_available initialises no CUDA context: a later fork stays safe).
if _TRITON_AVAILABLE and (triton_interpreting() or torch.cuda.is_available()):
    _triton_backend()


def set_default_backend(name: Optional[str]) -> None:
    """Set the process-wide backend used when an op is called with backend=None."""
    global _default_backend
    if name is not None:
        _check_backend_name(name)
    _default_backend = name


@contextlib.contextmanager
def use_backend(name: Optional[str]):
    """Ops called with backend=None inside this block use `name` (None: leave the default). A run
    chooses its backend once and enters this around its work (train/fast.py, the Trainer), so
    neither the modules nor the loss functions carry a backend. Read by traced code as a global:
    torch.compile guards on it."""
    global _default_backend
    if name is None:
        yield
        return
    _check_backend_name(name)
    saved, _default_backend = _default_backend, name
    try:
        yield
    finally:
        _default_backend = saved


def under_backend(fn, name: Optional[str]):
    """fn, run under use_backend(name) (outside any compiled region fn holds)."""
    if name is None:
        return fn

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with use_backend(name):
            return fn(*args, **kwargs)
    return run


def _check_backend_name(name: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")


def resolve_backend(backend: Optional[str], device: torch.device) -> str:
    """The concrete backend (reference, triton or cpp) for tensors on `device`, or a clear error."""
    name = backend or _default_backend or os.environ.get("DUIIT_BACKEND") or "auto"
    _check_backend_name(name)
    if name == "auto":
        if device.type == "cuda" and triton_available():
            return "triton"
        return "cpp" if device.type == "cpu" and cpp_available() else "reference"
    if name == "cpp":
        if device.type != "cpu":
            raise RuntimeError(f"backend 'cpp' runs on CPU tensors only; this tensor is on {device}")
        if not cpp_available():
            raise RuntimeError(f"backend 'cpp' needs the compiled extension duiit_fast._C ({_C_IMPORT_ERROR})")
    if name == "triton":
        if not triton_available():
            raise RuntimeError("backend 'triton' needs the triton package, which is not installed")
        if device.type == "cpu" and not triton_interpreting():
            raise RuntimeError("backend 'triton' runs on CUDA tensors (CPU tensors only under "
                               "TRITON_INTERPRET=1 set at process start); this tensor is on cpu")
        if device.type not in ("cpu", "cuda"):
            raise RuntimeError(f"backend 'triton' runs on CUDA tensors; this tensor is on {device}")
    return name


_CPP_DTYPES = (torch.float32, torch.float64)


def _fused_ops(backend: str, device: torch.device):
    """(instance_norm_act op, loss op) of a fused backend for tensors on `device`."""
    if backend == "cpp":
        return cpp_backend.instance_norm_act, cpp_backend.loss
    triton_backend = _triton_backend()   # CUDA, or CPU under the interpreter: the same ops
    return triton_backend.instance_norm_act, triton_backend.loss


def _upcast_for_cpp(backend: str, *tensors):
    """The C++ kernels take fp32/fp64: half-precision CPU inputs are computed in fp32."""
    if backend != "cpp" or tensors[0].dtype in _CPP_DTYPES:
        return tensors, None
    return tuple(None if t is None else t.float() for t in tensors), tensors[0].dtype


# --- public ops -------------------------------------------------------------------------------

def instance_norm_act(x: Tensor, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
                      residual: Optional[Tensor] = None, act: str = "relu", slope: float = 0.2,
                      eps: float = 1e-5, backend: Optional[str] = None) -> Tensor:
    """act(IN(x)·w + b), or residual + IN(x)·w + b (act "none"), on (N, C, H, W)."""
    reference.check_activation(act, residual)
    if x.dim() != 4:
        raise ValueError(f"instance_norm_act expects (N, C, H, W), got shape {tuple(x.shape)}")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"residual shape {tuple(residual.shape)} != x shape {tuple(x.shape)}")
    name = resolve_backend(backend, x.device)
    if name == "reference":
        return reference.instance_norm_act(x, weight, bias, residual, act, slope, eps)
    (x32, w, b, r), original = _upcast_for_cpp(name, x, weight, bias, residual)
    y = _fused_ops(name, x.device)[0](x32, w, b, r, act, float(slope), float(eps))[0]
    return y if original is None else y.to(original)


def loss_backend(backend: Optional[str], device: torch.device) -> str:
    """The concrete backend of the losses. "auto" on CUDA is the reference: measured on an H200
    (bench/RESULTS.md, 2026-11-26), the Triton LSGAN/L1 forward+backward took 0.48–0.51 ms against
    the eager reference's 0.30 ms at 16.7M elements (its launches cost more than the bytes it
    saves), and under torch.compile Inductor fuses the reference losses into their neighbours."""
    name = backend or _default_backend or os.environ.get("DUIIT_BACKEND") or "auto"
    if name == "auto" and device.type == "cuda":
        return "reference"
    return resolve_backend(name, device)


def _loss(kind: str, a: Tensor, b: Optional[Tensor], target: float, backend: Optional[str]) -> Tensor:
    name = loss_backend(backend, a.device)
    if name == "reference":
        return reference.lsgan_loss(a, target) if kind == "lsgan" else reference.l1_loss(a, b)
    if a.numel() == 0:
        raise ValueError(f"{kind} loss of an empty tensor")
    (a32, b32), original = _upcast_for_cpp(name, a, b)
    value = _fused_ops(name, a.device)[1](a32, b32, float(target), kind)
    return value if original is None else value.to(original)


def lsgan_loss(pred: Tensor, target: float, backend: Optional[str] = None) -> Tensor:
    """mean((pred - target)²): the least-squares GAN loss (real target 1, fake 0)."""
    return _loss("lsgan", pred, None, target, backend)


def l1_loss(a: Tensor, b: Tensor, backend: Optional[str] = None) -> Tensor:
    """mean(|a - b|), gradient sign(a - b)/n with sign(0) = 0. Different float dtypes (a bf16
    output under autocast against an fp32 target) are computed in the wider one."""
    if a.shape != b.shape:
        raise ValueError(f"l1_loss needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.device != b.device:
        raise ValueError(f"l1_loss needs one device, got {a.device} and {b.device}")
    if a.dtype != b.dtype:
        common = torch.promote_types(a.dtype, b.dtype)
        a, b = a.to(common), b.to(common)
    return _loss("l1", a, b, 0.0, backend)
