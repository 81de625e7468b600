"""Which implementation of an op runs: the backend names, what is installed, and one resolver.

A run picks its backend once, from its configuration (`TrainConfig.backend`, resolved by
`run_backend`), and enters it around its work with `use_backend`; an op called with `backend=None`
takes it, else "auto". A call may also name a backend explicitly, which wins. Nothing else chooses.

"auto" is the per-op table AUTO below: the fused kernels where they measured faster, the eager
reference elsewhere, and the reference wherever the chosen kernels are not installed.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from typing import Optional

import torch

from ..config import BACKENDS   # the names the configuration accepts (config imports no op)

try:
    from .. import _C   # the C++ extension; absent in a source tree that was never built
except ImportError as exc:  # pragma: no cover - exercised only without a build
    _C, CPP_IMPORT_ERROR = None, str(exc)
else:
    CPP_IMPORT_ERROR = ""

# Probed once at import (find_spec does not import triton): the resolver runs on every op call,
# and a plain constant is also what torch.compile traces without complaint.
_TRITON_INSTALLED = importlib.util.find_spec("triton") is not None

# The fused kernels of each device type.
FUSED = {"cuda": "triton", "cpu": "cpp"}
# op family → device type → what "auto" takes. The losses stay on the reference on CUDA: on an H200
# (bench/RESULTS.md, 2026-11-26) the Triton LSGAN/L1 forward+backward took 0.48–0.51 ms against the
# eager reference's 0.30 ms at 16.7M elements (its launches cost more than the bytes it saves).
AUTO = {
    "instance_norm": {"cuda": "triton", "cpu": "cpp"},
    "loss": {"cuda": "reference", "cpu": "cpp"},
}

_run_backend: Optional[str] = None   # set only by use_backend


def cpp_available() -> bool:
    return _C is not None


def triton_available() -> bool:
    return _TRITON_INSTALLED


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def fused_backend(device: torch.device) -> str:
    """The fused kernels' backend for tensors on `device` (what a benchmark's "fused" variant runs)."""
    return FUSED.get(device.type, "reference")


def run_backend(configured: str, compiled: bool) -> str:
    """The backend a run enters, from its configuration. Compiled, "auto" becomes the reference
    decomposition, which Inductor fuses with the padding and activations around it: on the CPU the
    opaque C++ op measured 1.02× vs 1.07× for compiled reference ops; on an H100 the Triton instance
    norm 3.41× vs 3.52× (bench/RESULTS.md). An explicit backend is kept."""
    check_name(configured)
    return "reference" if compiled and configured == "auto" else configured


@contextlib.contextmanager
def use_backend(name: Optional[str]):
    """Ops called with backend=None inside this block use `name` (None: leave it as it is). Read by
    traced code as a global: torch.compile guards on it."""
    global _run_backend
    if name is None:
        yield
        return
    check_name(name)
    saved, _run_backend = _run_backend, name
    try:
        yield
    finally:
        _run_backend = saved


def under_backend(fn, name: Optional[str]):
    """fn, run under use_backend(name) (outside any compiled region fn holds)."""
    if name is None:
        return fn

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with use_backend(name):
            return fn(*args, **kwargs)
    return run


def check_name(name: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")


def resolve(op: str, backend: Optional[str], device: torch.device) -> str:
    """The concrete backend (reference, triton or cpp) of op family `op` for tensors on `device`:
    the explicit `backend`, else the enclosing use_backend's, else "auto"; a clear error where the
    one named cannot run."""
    name = backend or _run_backend or "auto"
    check_name(name)
    if name == "auto":
        name = AUTO[op].get(device.type, "reference")
        installed = {"triton": triton_available(), "cpp": cpp_available(), "reference": True}[name]
        return name if installed else "reference"
    if name == "cpp":
        if device.type != "cpu":
            raise RuntimeError(f"backend 'cpp' runs on CPU tensors only; this tensor is on {device}")
        if not cpp_available():
            raise RuntimeError(f"backend 'cpp' needs the compiled extension duiit_fast._C ({CPP_IMPORT_ERROR})")
    if name == "triton":
        if not triton_available():
            raise RuntimeError("backend 'triton' needs the triton package, which is not installed")
        if device.type == "cpu" and not triton_interpreting():
            raise RuntimeError("backend 'triton' runs on CUDA tensors (CPU tensors only under "
                               "TRITON_INTERPRET=1 set at process start); this tensor is on cpu")
        if device.type not in ("cpu", "cuda"):
            raise RuntimeError(f"backend 'triton' runs on CUDA tensors; this tensor is on {device}")
    return name


def registered_on_first_use(register):
    """A function returning register()'s ops, registering them on its first call only: defining a
    triton_op imports torch._dynamo and torch._inductor (~3 s of a CPU process's start), and
    `@triton.jit` must not run before TRITON_INTERPRET is set. The cache is a closure list, which
    compiled code reads without retracing."""
    registered: list = []

    def ops():
        if not registered:
            registered.append(register())
        return registered[0]
    return ops


def numpy_view(t: Optional[torch.Tensor]):
    """The C++ kernels' input: a contiguous CPU tensor as numpy (None stays None)."""
    return None if t is None else t.detach().contiguous().numpy()


def contiguous_or_none(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.contiguous()


_CPP_DTYPES = (torch.float32, torch.float64)


def upcast_for_cpp(backend: str, *tensors):
    """The C++ kernels take fp32/fp64: half-precision CPU inputs are computed in fp32. Returns the
    tensors to pass and the dtype to cast the result back to (None: no cast)."""
    if backend != "cpp" or tensors[0].dtype in _CPP_DTYPES:
        return tensors, None
    return tuple(None if t is None else t.float() for t in tensors), tensors[0].dtype
