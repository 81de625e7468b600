"""`duiit doctor`: what is installed and usable, without touching CUDA more than a query."""
from __future__ import annotations

import importlib
import platform


def _version(module: str) -> str:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # any import failure is information here
        return f"not usable ({exc.__class__.__name__}: {str(exc).splitlines()[0][:80]})"
    return getattr(mod, "__version__", "installed")


def report() -> str:
    import torch
    from . import ops
    from .train.fast import cpu_features
    lines = [f"python      {platform.python_version()} ({platform.machine()})",
             f"torch       {torch.__version__}, {torch.get_num_threads()} CPU threads ({cpu_features()})"]
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        lines.append(f"CUDA        {torch.version.cuda}: {names}")
    else:
        lines.append(f"CUDA        not available (torch built with CUDA {torch.version.cuda or 'none'})")
    lines.append(f"triton      {_version('triton')}")
    lines.append(f"DALI        {_version('nvidia.dali')}")
    lines.append(f"torchvision {_version('torchvision')}")
    if ops.cpp_available():
        lines.append(f"extension   duiit_fast._C loaded, OpenMP {'on' if ops._C.has_openmp else 'off'}, "
                     f"{ops._C.openmp_threads()} threads")
    else:
        lines.append(f"extension   duiit_fast._C not usable ({ops._C_IMPORT_ERROR})")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    lines.append(f"backend     auto → instance norm {ops.resolve('instance_norm', 'auto', device)}, "
                 f"losses {ops.resolve('loss', 'auto', device)} on {device.type}")
    return "\n".join(lines)
