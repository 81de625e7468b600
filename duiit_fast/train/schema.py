"""What a checkpoint must hold before any of it is used, and whether a configuration fits the machine.

The checksum of checkpoint.py only catches damage: anyone can write a file with a valid one. So a
checkpoint is checked as data against the run it claims to be, before anything is built from it:
known keys; a configuration that is a valid TrainConfig (its ranges bound every size); every net
the setting needs and no other, each tensor of the shape the nets built from that configuration
have (built on the meta device: no memory is allocated); every weight and stored statistic finite.
Any failure is one DuiitError naming the file and the first problem.
"""
from __future__ import annotations

import math
import os

import torch

from ..config import TrainConfig
from ..validation import REMOVED_AT
from ..errors import DuiitError
from .methods import method_of

REQUIRED_KEYS = {"config", "epoch", "nets", "history", "age_mean", "age_std", "optimizers", "schedulers",
                 "samplers", "rng"}
# "tail" and "joint_warmup_done": older checkpoints' entries of removed knobs (empty / 0 to load)
OPTIONAL_KEYS = {"translator_steps", "pretrain_steps", "best", "tail", "joint_warmup_done", "fast_path", "readers",
                 "pools", "pool_rng", "loaders", "ranks", "world_size"}
COUNTERS = ("epoch", "translator_steps", "pretrain_steps", "joint_warmup_done")


def _fail(path, problem: str):
    raise DuiitError(f"{path}: {problem}")


def check_run_checkpoint(state, path) -> TrainConfig:
    """The configuration of a run checkpoint, once its structure holds (see the module's doc)."""
    if not isinstance(state, dict):
        _fail(path, "not a duiit_fast run checkpoint (not a table of entries)")
    missing, unknown = REQUIRED_KEYS - state.keys(), state.keys() - REQUIRED_KEYS - OPTIONAL_KEYS
    if missing:
        _fail(path, f"not a run checkpoint: no {', '.join(sorted(map(str, missing)))}")
    if unknown:
        _fail(path, f"unknown entry {sorted(map(str, unknown))[0][:60]!r}: not written by this version")
    cfg = _config_of(state["config"], path)
    for name in COUNTERS:
        value = state.get(name, 0)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10 ** 9:
            _fail(path, f"{name} is not a step count ({str(value)[:40]})")
    if state["epoch"] > cfg.epochs:
        _fail(path, f"epoch {state['epoch']} is beyond the run's {cfg.epochs} epochs")
    for name in ("age_mean", "age_std"):
        value = state[name]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            _fail(path, f"{name} is not a finite number ({str(value)[:40]})")
    if state["age_std"] <= 0:
        _fail(path, f"age_std must be positive, got {state['age_std']}")
    expected = expected_shapes(cfg)
    _check_nets(state["nets"], expected, cfg, path)
    best = state.get("best")
    if best is not None:
        if not isinstance(best, dict) or "P" not in best:
            _fail(path, "best: not a saved predictor")
        _check_tensors(best["P"], expected["P"], path, "best.P")
    if state.get("tail", []) != [] or state.get("joint_warmup_done", 0) != 0:   # filled only by removed knobs
        _fail(path, f"holds a snapshot ensemble or a joint warm-up, which this version no longer runs "
                    f"(commit {REMOVED_AT} does)")
    check_readers(state.get("readers", {}), path)
    for name in ("optimizers", "schedulers", "samplers", "rng"):
        if not isinstance(state[name], dict):
            _fail(path, f"{name}: not a table")
    return cfg


def check_readers(readers, path) -> None:
    """Saved CT readers: role → an AgeReader's state, of its shapes, finite, with a positive scale."""
    if not isinstance(readers, dict):
        _fail(path, "readers: not a table of CT readers")
    if not readers:
        return
    from ..models.reader import AgeReader
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in AgeReader().state_dict().items()}
    for role, reader in readers.items():
        _check_tensors(reader, shapes, path, f"readers.{str(role)[:40]}")
        if not float(reader["age_std"]) > 0:
            _fail(path, f"readers.{role}: age_std must be positive")


def _config_of(data, path) -> TrainConfig:
    if not isinstance(data, dict):
        _fail(path, f"config is a {type(data).__name__}, not a table of fields")
    try:
        return TrainConfig.from_dict(data).validate(check_paths=False)
    except DuiitError as exc:
        _fail(path, f"stored {exc}")


def expected_shapes(cfg: TrainConfig) -> dict:
    """net name → (parameter/buffer name → shape) of the nets `cfg` builds, without allocating them.
    Cached by what decides the shapes: a Trainer asks at construction, at fit and when loading."""
    key = (cfg.kind, cfg.sources, cfg.predictor, cfg.generator, cfg.ngf, cfg.ndf, cfg.resolved_n_blocks,
           cfg.image_size)
    if key not in _SHAPES:
        from .networks import Networks
        with torch.device("meta"):
            nets = Networks.build(cfg, torch.device("meta"), method_of(cfg.kind))
        _SHAPES[key] = {name: {k: tuple(v.shape) for k, v in net.state_dict().items()} for name, net in nets.items()}
    return _SHAPES[key]


_SHAPES: dict = {}   # read only by callers


def _check_nets(nets, expected: dict, cfg: TrainConfig, path) -> None:
    if not isinstance(nets, dict):
        _fail(path, "nets: not a table of networks")
    for name in expected:
        if name not in nets:
            _fail(path, f"holds no net {name!r}, which setting {cfg.setting} needs")
    for name in nets:
        if name not in expected:
            _fail(path, f"holds a net {str(name)[:40]!r} that setting {cfg.setting} does not have")
    for name, shapes in expected.items():
        _check_tensors(nets[name], shapes, path, f"nets.{name}")


def _check_tensors(state, shapes: dict, path, where: str) -> None:
    if not isinstance(state, dict):
        _fail(path, f"{where}: not a table of tensors")
    for key, shape in shapes.items():
        if key not in state:
            _fail(path, f"{where}: no {key}")
        value = state[key]
        if not isinstance(value, torch.Tensor):
            _fail(path, f"{where}.{key}: not a tensor")
        if tuple(value.shape) != shape:
            _fail(path, f"{where}.{key} has shape {tuple(value.shape)}, the configuration's nets have {shape}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            _fail(path, f"{where}.{key} holds NaN or infinite values")
    extra = set(state) - set(shapes)
    if extra:
        _fail(path, f"{where}: unknown tensor {str(sorted(map(str, extra))[0])[:60]!r}")


# What restoring a checked state can still raise (an optimiser's state of another length, a
# sampler's state of another type): turned into one line, never a traceback.
RESTORE_ERRORS = (RuntimeError, KeyError, TypeError, ValueError, IndexError, AttributeError)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{exc.__class__.__name__}: {text[:200]}"


# -- does a configuration fit? -----------------------------------------------------------------

# Float32 values kept per pixel per image for backward, rough: a ResNet-50 keeps ~500 per input
# pixel, ResNet-18 ~150, the phantom's small regressor ~50. A ResNet generator keeps ~3 maps
# (conv, norm, activation) per layer at ngf·(1, ½, ¼ …) of the pixels, about 3·ngf·(3.5 + blocks).
PREDICTOR_FLOATS_PER_PIXEL = {"resnet50": 500, "resnet18": 150, "small": 50}
BYTES_PER_PARAMETER = 16    # the weight, its gradient and Adam's two moments in float32


def estimate_bytes(cfg: TrainConfig) -> dict:
    """A coarse estimate of what training `cfg` holds in memory, in bytes: parameters (counted on
    the meta device), activations of one step, and the phantom's volumes (rendered natively and
    resized). It is for refusing what cannot fit, not for planning: real use is often lower."""
    shapes = expected_shapes(cfg)
    parameters = sum(math.prod(s) for net in shapes.values() for s in net.values())
    pixels = cfg.image_size ** 2
    method = method_of(cfg.kind)
    generator = 3 * cfg.ngf * (3.5 + cfg.resolved_n_blocks)
    passes = 4 * len(method.translator_sources(cfg))   # G(y), F(G(y)), F(x), G(F(x)) per source
    batch = method.pair_batch_size(cfg)
    activations = 4 * pixels * batch * (passes * generator + PREDICTOR_FLOATS_PER_PIXEL[cfg.predictor])
    if cfg.fast.precision == "bf16":
        activations //= 2
    data = 0
    if cfg.ct is None:
        p = cfg.phantom
        slices = p.slices_per_patient
        ct = (p.ct_train_patients + p.ct_val_patients + p.ct_test_patients) * slices * (p.ct_size ** 2 + pixels)
        sizes = {"mri": p.mri_size, "pet": p.pet_size}
        sources = sum(p.source_patients * slices * (sizes[m] ** 2 + 2 * pixels) for m in cfg.sources)
        data = 4 * (ct + sources)
    return {"parameters": BYTES_PER_PARAMETER * parameters, "activations": activations, "data": data}


def machine_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2 ** 62


def check_fits(cfg: TrainConfig, device: torch.device, training: bool = True) -> None:
    """One line when `cfg` clearly cannot fit: model and step on the device, data in memory. For
    inference (training=False) only the weights count: a model trained on a large GPU still
    predicts on a laptop."""
    need = estimate_bytes(cfg)
    if not training:
        need = {"parameters": need["parameters"] // (BYTES_PER_PARAMETER // 4), "activations": 0, "data": 0}
    gib = 2 ** 30
    model = need["parameters"] + need["activations"]
    if device.type == "cuda":
        have = torch.cuda.get_device_properties(device).total_memory
        places = [(model, have, f"{device}'s memory"), (need["data"], machine_bytes(), "this machine's memory")]
    else:
        places = [(model + need["data"], machine_bytes(), "this machine's memory")]
    for amount, have, where in places:
        if amount > have:
            parts = ", ".join(f"{k} {v / gib:.1f}" for k, v in need.items())
            raise DuiitError(f"this configuration needs about {amount / gib:.0f} GiB ({parts} GiB), more than "
                             f"{where} ({have / gib:.0f} GiB): lower image_size, batch_size, ngf or the number "
                             "of patients / slices")
