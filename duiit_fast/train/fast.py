"""The fast path of a run: torch.compile, bf16 autocast, channels_last and fused Adam.

Each switch is "auto" by default and resolved once per run from the device. What was resolved is
stored in the checkpoint. The eager fp32 path stays the reference: tests compare them step for step.

Measured (bench/RESULTS.md): on this project's 2-core AVX2 CPU (size M) eager with the C++ fused
ops ran 1.12× the eager reference, compiled reference ops 1.07×, compiled C++ ops 1.02×, after a
155–224 s cold compile; bf16 ~14× slower than fp32. On an H100 at the paper's size (256², 16 pairs)
compiled bf16 ran 3.52× the eager fp32 reference with the reference ops and 3.41× with the Triton
instance norm (its NHWC kernels), eager bf16 with the Triton ops 1.80×. On a 2-core Zen 4 CPU
(AVX-512 with BF16, size M): eager fused fp32 1.19×, eager fused bf16 1.80×, compiled reference
fp32 1.32× and bf16 2.24× (cold compile 122–129 s), compiled C++ ops 1.22× / 1.94×. Compiled on
the CPU each residual block is one nested compile region (compile_regions) with NHWC activations:
cold compile 71–80 s instead of 87–125 s unrolled at M, the step 1.21× (fp32) / 2.08× (bf16) the
eager fp32 reference against 1.20× / 2.04× unrolled in the same run.

So "auto" on CPU is eager with the fused ops, in bf16 where the CPU has it natively and fp32
elsewhere (a cold compile of minutes per process is not repaid by short runs; `compile = "on"`
is the fastest step for long ones on a native-bf16 CPU); on CUDA compiled bf16 channels_last. A
compiled step takes the reference ops on every device: Inductor fuses them with the padding and
activations around them.
"""
from __future__ import annotations

import torch

from .. import ops
from ..errors import DuiitConfigError
from ..models.generator import regions_supported
from .step_functions import FastPath


def cpu_native_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic (AVX-512 BF16 or AMX): without it oneDNN emulates bf16
    and a bf16 step ran ~14× slower than fp32 (bench/RESULTS.md). torch.cpu's probes are private
    API (present since torch 2.3): a torch without them counts as no."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(probe() for probe in probes if probe is not None)


def cpu_features() -> str:
    """The CPU's vector ISA as torch dispatches to it, and native bf16: runs on CPUs with another
    ISA round differently, so results and timings record it."""
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")()
    return f"{capability}{', native bf16' if cpu_native_bf16() else ''}"


def _switch(value: str, auto: bool) -> bool:
    return {"on": True, "off": False}.get(value, auto)


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_native_bf16()


def device_defaults(cfg, device: torch.device) -> dict:
    """The switches needed before the optimisers are built. bf16 is automatic where the device
    computes in bf16 natively: on CUDA, and on CPUs with AVX-512 BF16 or AMX, where the eager bf16
    step with the C++ ops ran 1.80× the fp32 reference (2-core Zen 4, size M); on AVX2 CPUs oneDNN
    emulates bf16 and the step ran ~14× slower (bench/RESULTS.md).
    channels_last is automatic on CUDA and in a compiled CPU step with block regions (as the
    config resolves them). oneDNN's convolutions write NHWC, and a region's fixed
    NCHW interface made every block transpose its conv outputs back: at M with NHWC activations the
    regions' step ran 1.22× (fp32) and 2.17× (bf16) the eager fp32 reference against 1.18× / 2.10×
    in NCHW. Eager and unrolled CPU steps gain nothing from it (0.91× / 1.00× on the AVX2 CPU)."""
    cuda = device.type == "cuda"
    regions = regions_for(_switch(cfg.fast.compile, auto=cuda), device, cfg.fast.compile_regions)
    bf16 = cfg.fast.precision == "bf16" or (cfg.fast.precision == "auto" and native_bf16(device))
    return {"bf16": bf16, "channels_last": _switch(cfg.fast.channels_last, auto=cuda or regions),
            "fused_optimizer": cfg.fast.fused_optimizer and device.type in ("cuda", "cpu")}




def regions_for(compile_: bool, device: torch.device, choice: str = "auto") -> bool:
    """Block regions ("auto") where they were measured right and faster to compile: compiled on the
    CPU. At M on 2 cores (Zen 4), with NHWC activations (device_defaults), they cut the cold compile
    from 87-125 s to 71-80 s and the step was as fast as unrolled (fp32 1.21× vs 1.20×, bf16 2.08×
    vs 2.04× the eager fp32 reference; bench/RESULTS.md). CUDA compiles on many cores and has not
    been checked with them, so "auto" unrolls the blocks there as before."""
    return compile_ and regions_supported() and _switch(choice, auto=device.type == "cpu")


def resolve_fast_path(cfg, device: torch.device) -> FastPath:
    """Everything resolved; the op backend by ops.run_backend (compiled, "auto" is the reference)."""
    compile_ = _switch(cfg.fast.compile, auto=device.type == "cuda")
    backend = ops.run_backend(cfg.backend, compile_)
    regions = regions_for(compile_, device, cfg.fast.compile_regions)
    return FastPath(compile=compile_, backend=backend, regions=regions, **device_defaults(cfg, device))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DuiitConfigError(f"config device: {name} requested but CUDA is not available")
    return device


def run_device(cfg, world) -> torch.device:
    """The device a run trains on (one GPU per rank under torch.distributed), after checking that its
    weights fit there, that DALI is installed where asked for, and setting the run's threads."""
    from .schema import check_fits
    device = resolve_device(cfg.device)
    check_fits(cfg, device, training=False)   # the weights, before they are allocated
    if world.distributed and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", world.local_rank)
    if cfg.loader == "dali":
        from ..data.loaders import dali_available
        if not dali_available():
            raise DuiitConfigError("config loader: 'dali' needs nvidia-dali (pip install nvidia-dali-cuda130); "
                                   "use 'auto' or 'torch' without it")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    return device
