"""`duiit bench` and `duiit profile`: the joint DUIIT step, eager reference vs the fast paths.

One step = one G/F/P update on the joint loss plus one critic update, on a batch of CT/MRI pairs
(synthetic images: the data pipeline is measured by bench/bench_loader.py). Variants differ in
the op backend (reference = eager PyTorch ops; fused = the C++ kernels on CPU, Triton on CUDA),
torch.compile and bf16 autocast. Timing is interleaved (round r times every variant once) so
that a slower stretch of a shared machine hits every variant alike; the first steps, which
include compilation, are reported separately and never mixed into the step time.
"""
from __future__ import annotations

import dataclasses
import math
import os
import platform
import statistics
import tempfile
import time

import torch

from . import ops
from .config import FastConfig, TrainConfig
from .train.throughput import FlopCount, matmul_ceiling, synchronize

# 200 epochs over the 3454 MRI slices (the larger set) in batches of 16 pairs: the paper's MIX-CT-MRI run.
PAPER_EPOCHS, PAPER_MRI_SLICES, PAPER_BATCH = 200, 3454, 16
PAPER_PAIRS = PAPER_EPOCHS * math.ceil(PAPER_MRI_SLICES / PAPER_BATCH) * PAPER_BATCH

SIZES = {   # image size, pairs per step, translator width, predictor
    "S": dict(image_size=64, batch_size=4, ngf=32, ndf=32, predictor="small"),
    "M": dict(image_size=128, batch_size=4, ngf=32, ndf=32, predictor="small"),
    "L": dict(image_size=64, batch_size=8, ngf=64, ndf=64, predictor="resnet18"),
    "paper": dict(image_size=256, batch_size=16, ngf=64, ndf=64, predictor="resnet50"),
}


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    fused: bool
    compile: bool
    bf16: bool
    unrolled: bool = False   # compiled with every residual block inlined, no block regions


VARIANTS = tuple(Variant(f"{'compiled' if c else 'eager'} {'fused' if f else 'reference'} {'bf16' if b else 'fp32'}",
                         f, c, b)
                 for b in (False, True) for c in (False, True) for f in (False, True))
BASELINE = VARIANTS[0]   # eager reference fp32: the oracle every speed-up is a ratio against
# Compiled on the CPU a run makes each residual block one nested compile region (train/fast.py);
# these variants time the same step with the blocks unrolled, as CUDA compiles it. Not in the
# default set; named explicitly.
UNROLLED_VARIANTS = tuple(dataclasses.replace(v, name=v.name + " unrolled", unrolled=True)
                          for v in VARIANTS if v.compile and not v.fused)


def variant_by_name(name: str) -> Variant:
    for v in VARIANTS + UNROLLED_VARIANTS:
        if v.name == name or v.name.replace(" ", "-") == name:
            return v
    raise ValueError(f"unknown variant {name!r}; one of: "
                     f"{', '.join(v.name.replace(' ', '-') for v in VARIANTS + UNROLLED_VARIANTS)}")


class StepHarness:
    """The models of one benchmark size under one variant, with a fixed synthetic batch. `regions`:
    compiled with block regions or not (None: as a run on this device would)."""

    def __init__(self, size: str, variant: Variant, device: torch.device, seed: int = 0,
                 regions: bool | None = None, region_options: tuple | None = None):
        from .train.fast import device_defaults
        from .train.step_functions import REGION_COMPILE_OPTIONS, FastPath
        from .train.step import SourceBatch
        from .train.trainer import Trainer
        self.size, self.variant, self.device = size, variant, device
        regions = self._regions(variant, device, regions)
        # compile_regions spelled out: the Trainer and device_defaults resolve the same regions (NHWC with them)
        fast = FastConfig(precision="bf16" if variant.bf16 else "fp32", compile="on" if variant.compile else "off",
                          compile_regions="on" if regions else "off")
        cfg = TrainConfig(setting="MIX-CT-MRI", device=str(device), seed=seed, fast=fast, **SIZES[size])
        self.cfg = cfg
        self.trainer = Trainer(cfg, data=None, progress=False)   # models only: the batch is synthetic
        defaults = device_defaults(cfg, device)
        self.fast = FastPath(compile=variant.compile, backend=ops.fused_backend(device) if variant.fused else "reference",
                             regions=regions, region_options=REGION_COMPILE_OPTIONS if region_options is None else region_options,
                             **defaults)
        self.trainer.use_fast_path(self.fast)
        gen = torch.Generator().manual_seed(seed)
        b, s = cfg.batch_size, cfg.image_size

        def images():
            x = (torch.rand(b, 1, s, s, generator=gen) * 2 - 1).to(device)
            return x.contiguous(memory_format=torch.channels_last) if defaults["channels_last"] else x
        self.x, self.ages = images(), torch.randn(b, generator=gen).to(device)
        self.sources = {"mri": SourceBatch(images(), torch.randn(b, generator=gen).to(device))}

    @staticmethod
    def _regions(variant: Variant, device: torch.device, regions: bool | None) -> bool:
        from .train.fast import regions_for
        if regions is not None:
            return regions
        return not variant.unrolled and regions_for(variant.compile, device)

    def step(self) -> dict:
        from .train.step import joint_step
        t = self.trainer
        parts = joint_step(t.nets, t.optimizers, t.pools, self.x, self.ages, self.sources, self.cfg, fns=t.step_functions)
        values = torch.stack([v.float() for v in parts.values()]).tolist()   # the step's one host sync
        return dict(zip(parts, values))

    def flops_per_step(self) -> int:
        """FLOPs of one step's forward and backward passes (torch's FLOP counter: convolutions and
        matmuls, i.e. what bounds the step), counted on the eager path."""
        from .train.step import joint_step
        from .train.step_functions import EAGER, build_step_functions
        t = self.trainer
        eager = build_step_functions(t.nets, self.cfg, dataclasses.replace(EAGER, backend=self.fast.backend))
        with FlopCount() as counter:
            joint_step(t.nets, t.optimizers, t.pools, self.x, self.ages, self.sources, self.cfg, fns=eager)
        return counter.total


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from .train.fast import cpu_features
    return f"{platform.processor() or platform.machine()} CPU ({cpu_features()}), {torch.get_num_threads()} threads"


def run_bench(size: str = "M", variants=VARIANTS, device: str = "cpu", rounds: int = 10, warmup: int = 2,
              log=print, cached_compile: bool = True) -> dict:
    """Interleaved step timing of every variant at one size; compile (first-step) times apart,
    cold (empty Inductor cache) and cached (a fresh Dynamo state on the warm cache)."""
    dev = torch.device(device)
    variants = list(variants)
    if BASELINE not in variants:
        variants.insert(0, BASELINE)
    if dev.type == "cpu":
        torch.backends.mkldnn.enabled = True
    # A private Inductor cache: "cold" is cold even when earlier runs warmed the user's cache.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="duiit-bench-inductor-")
    harnesses, first_step = {}, {}
    for v in variants:
        cold = " (torch.compile, cold: minutes on a CPU)" if v.compile and dev.type == "cpu" else ""
        log(f"building {size} / {v.name}{cold} ...")
        h = StepHarness(size, v, dev)
        start = time.perf_counter()
        h.step()
        synchronize(dev)
        first_step[v.name] = time.perf_counter() - start
        for _ in range(warmup):
            h.step()
        harnesses[v.name] = h
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    for r in range(rounds):
        for v in variants:
            start = time.perf_counter()
            harnesses[v.name].step()
            synchronize(dev)
            times[v.name].append(time.perf_counter() - start)
    cached = {}
    for v in variants:
        if v.compile and cached_compile:
            torch._dynamo.reset()   # forget the compiled graphs; the on-disk cache stays warm
            h = StepHarness(size, v, dev)
            start = time.perf_counter()
            h.step()
            synchronize(dev)
            cached[v.name] = time.perf_counter() - start
    flops = harnesses[BASELINE.name].flops_per_step()
    ceiling = {"fp32": matmul_ceiling(dev, torch.float32), "bf16": matmul_ceiling(dev, torch.bfloat16)}
    base = statistics.median(times[BASELINE.name])
    pairs = SIZES[size]["batch_size"]
    rows = []
    for v in variants:
        med = statistics.median(times[v.name])
        # The speed-up is the ratio of the medians shown, so a row's numbers agree with each other
        # (a median of per-round ratios did not, where one variant's rounds were far more spread).
        rows.append({"variant": v.name, "step_s": med, "step_min_s": min(times[v.name]),
                     "step_max_s": max(times[v.name]), "pairs_per_s": pairs / med, "speedup": base / med,
                     # bf16 rows against the better of the two ceilings (bf16 GEMM can be the slower one
                     # on CPUs without native bf16).
                     "mfu": flops / med / (max(ceiling.values()) if v.bf16 else ceiling["fp32"]),
                     "first_step_s": first_step[v.name],
                     "compile_cold_s": first_step[v.name] - med if v.compile else None,
                     "compile_cached_s": cached[v.name] - med if v.name in cached else None,
                     "paper_schedule_h": PAPER_PAIRS / (pairs / med) / 3600})
    tf32 = dev.type == "cuda" and torch.backends.cudnn.allow_tf32
    return {"size": size, "config": SIZES[size], "device": device_description(dev), "torch": torch.__version__,
            "fp32_math": " (TF32 units, cuDNN's default)" if tf32 else "",
            "rounds": rounds, "flops_per_step": flops, "gemm_ceiling_flops": ceiling, "baseline_step_s": base,
            "paper_pairs": PAPER_PAIRS, "rows": rows}


def format_table(result: dict) -> str:
    c = result["config"]
    lines = [f"joint DUIIT step, size {result['size']} ({c['image_size']}², {c['batch_size']} pairs, ngf {c['ngf']}, "
             f"{c['predictor']} predictor) on {result['device']}, torch {result['torch']}",
             f"{result['flops_per_step'] / 1e9:.1f} GFLOP per step; measured GEMM ceiling "
             f"{result['gemm_ceiling_flops']['fp32'] / 1e9:.0f} GFLOP/s fp32{result.get('fp32_math', '')}, "
             f"{result['gemm_ceiling_flops']['bf16'] / 1e9:.0f} GFLOP/s bf16; step time: median (min–max) of "
             f"{result['rounds']} interleaved rounds; speed-up = eager reference fp32's median / this median",
             "",
             "| variant | step ms, median (min–max) | pairs/s | speed-up | MFU | compile cold s | cached s | "
             "paper's MIX-CT-MRI run at this size, h |",
             "|---|---|---|---|---|---|---|---|"]
    check_consistent(result)

    def sec(v):
        return "–" if v is None else f"{v:.1f}"
    for r in result["rows"]:
        lines.append(f"| {r['variant']} | {r['step_s'] * 1e3:.1f} ({r['step_min_s'] * 1e3:.1f}–"
                     f"{r['step_max_s'] * 1e3:.1f}) | {r['pairs_per_s']:.2f} | {r['speedup']:.2f}× | "
                     f"{r['mfu'] * 100:.1f} % | {sec(r['compile_cold_s'])} | {sec(r['compile_cached_s'])} | "
                     f"{r['paper_schedule_h']:.1f} |")
    lines.append(f"(last column: the projected wall time of the paper's MIX-CT-MRI training, {result['paper_pairs']:,} "
                 f"pairs = {PAPER_EPOCHS} epochs × ⌈{PAPER_MRI_SLICES}/{PAPER_BATCH}⌉ steps × {PAPER_BATCH}, at "
                 "this row's pairs/s: this size's model, not the paper's, unless the size is paper)")
    return "\n".join(lines)


RATIO_TOLERANCE = 0.005   # relative: what rounding to the digits shown can leave


def check_consistent(result: dict) -> None:
    """Refuse a table whose numbers contradict each other: every speed-up must be the baseline's
    median step over the row's, and the median must lie within the row's spread."""
    base = next(r for r in result["rows"] if r["variant"] == BASELINE.name)["step_s"]
    for r in result["rows"]:
        if abs(r["speedup"] - base / r["step_s"]) > RATIO_TOLERANCE * r["speedup"]:
            raise ValueError(f"bench row {r['variant']!r}: speed-up {r['speedup']:.3f}× is not the ratio of "
                             f"the medians ({base / r['step_s']:.3f}×)")
        if not r["step_min_s"] <= r["step_s"] <= r["step_max_s"]:
            raise ValueError(f"bench row {r['variant']!r}: median step outside its min–max")


def run_profile(size: str, variant: Variant, device: str, steps: int, out_dir, log=print) -> str:
    """A torch.profiler trace (Chrome format) of `steps` warm steps and a top-ops table."""
    from pathlib import Path
    from torch.profiler import ProfilerActivity, profile
    from .io import write_text
    dev = torch.device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    h = StepHarness(size, variant, dev)
    for _ in range(2):   # compile and warm up outside the trace
        h.step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities, record_shapes=True) as prof:
        for _ in range(steps):
            h.step()
        synchronize(dev)
    trace = out / f"trace-{size}-{variant.name.replace(' ', '-')}.json"
    prof.export_chrome_trace(str(trace))
    # torch ≥ 2.4 names the device column self_device_time_total (self_cuda_time_total before)
    sort = "self_cpu_time_total"
    if dev.type == "cuda":
        averages = prof.key_averages()
        sort = "self_device_time_total" if averages and hasattr(averages[0], "self_device_time_total") \
            else "self_cuda_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=20)
    write_text(out / f"top-ops-{size}-{variant.name.replace(' ', '-')}.txt", table + "\n")
    log(f"trace: {trace}")
    return table
