"""The verbs that measure: bench (the joint step's variants), profile (a torch.profiler trace) and
doctor (what is installed and usable)."""
from __future__ import annotations

import re
import sys

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def _bench_variants(names, device: str = "cuda"):
    """The named variants; by default all of them on CUDA, the eager ones on a CPU (where each
    compiled variant first compiles cold for minutes: named explicitly, or `all`)."""
    from ..bench import VARIANTS, variant_by_name
    from ..errors import DuiitConfigError
    if not names:
        return [v for v in VARIANTS if device.startswith("cuda") or not v.compile]
    if names == ["all"]:
        return list(VARIANTS)
    try:
        return [variant_by_name(n) for n in names]
    except ValueError as exc:
        raise DuiitConfigError(str(exc)) from None


def _bench_device(name: str) -> str:
    import torch
    from ..errors import DuiitConfigError
    if not DEVICE_PATTERN.fullmatch(name):
        raise DuiitConfigError(f"--device must be auto, cpu or cuda[:N], got {name[:40]!r}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DuiitConfigError(f"--device {name}: CUDA is not available on this machine")
    return name


def cmd_bench(args) -> int:
    from ..bench import format_table, run_bench
    from ..errors import DuiitConfigError
    from ..io import write_json
    if args.rounds < 1:
        raise DuiitConfigError(f"--rounds must be at least 1, got {args.rounds}")
    device = _bench_device(args.device)
    result = run_bench(args.size, _bench_variants(args.variants, device), device, rounds=args.rounds,
                       log=lambda m: print(m, file=sys.stderr), cached_compile=not args.no_cached_compile)
    print(format_table(result))
    if args.json:
        write_json(args.json, result)
    return 0


def cmd_profile(args) -> int:
    from ..bench import run_profile
    from ..errors import DuiitConfigError
    if args.steps < 1:
        raise DuiitConfigError(f"--steps must be at least 1, got {args.steps}")
    variant, = _bench_variants([args.variant])
    print(run_profile(args.size, variant, _bench_device(args.device), args.steps, args.out))
    return 0


def cmd_doctor(args) -> int:
    from ..doctor import report
    print(report())
    return 0


def add_parsers(sub) -> None:
    from ..bench import SIZES, VARIANTS
    variant_names = ", ".join(v.name.replace(" ", "-") for v in VARIANTS)
    sizes = "; ".join(f"{k}: {v['image_size']}², {v['batch_size']} pairs, ngf {v['ngf']}, {v['predictor']} predictor"
                      for k, v in SIZES.items())
    bn = sub.add_parser("bench", help="time the joint step: eager reference vs fused ops, compile, bf16",
                        description="Time one joint DUIIT step (synthetic batch) for each variant, interleaved, "
                                    "and print step time, pairs/s, speed-up against the eager reference fp32, "
                                    "MFU against the measured matmul ceiling, cold and cached compile time and "
                                    f"the projected wall time of the paper's MIX-CT-MRI schedule. Sizes: {sizes}.")
    bn.add_argument("--size", choices=list(SIZES), default="M",
                    help=f"the step's size (default M): {sizes}")
    bn.add_argument("--variants", nargs="+", metavar="VARIANT",
                    help=f"some of {variant_names}, or all; default: all on CUDA, the four eager ones on a "
                         "CPU (about 1.5 minutes at M on 2 cores; each compiled variant adds a cold compile of "
                         "minutes there). compiled-reference-fp32-unrolled and compiled-reference-bf16-unrolled "
                         "time the compiled step without the CPU's block regions")
    bn.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    bn.add_argument("--rounds", type=int, default=10, help="interleaved timing rounds (default 10)")
    bn.add_argument("--json", help="also write the numbers to this JSON file")
    bn.add_argument("--no-cached-compile", action="store_true",
                    help="skip the second, warm-cache compile of each compiled variant (saves its time)")
    bn.set_defaults(func=cmd_bench)

    pr = sub.add_parser("profile", help="torch.profiler trace and top-ops table of the joint step",
                        description="Profile warm joint steps of one variant: writes a Chrome trace "
                                    "(chrome://tracing, Perfetto) and the top-ops table to OUT.")
    pr.add_argument("--size", choices=list(SIZES), default="M", help="the step's size, as for bench (default M)")
    pr.add_argument("--variant", default="eager-reference-fp32", help=f"one of {variant_names}")
    pr.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    pr.add_argument("--steps", type=int, default=3, help="warm steps profiled (default 3)")
    pr.add_argument("--out", default="runs/profile", help="output folder (default runs/profile)")
    pr.set_defaults(func=cmd_profile)

    doc = sub.add_parser("doctor", help="what is installed and usable: torch, CUDA, Triton, DALI, the extension")
    doc.set_defaults(func=cmd_doctor)
