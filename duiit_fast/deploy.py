"""The trained CT predictor as one file that runs without duiit_fast (`duiit export --predictor FILE`).

The exported module takes CT slices in Hounsfield units, a float32 tensor (N, H, W) of any size, and
returns ages in years (N,). Everything `duiit predict` does to a slice is inside it: the HU window
to [-1, 1], the resize to the training size (antialiased, as training shrank its slices), the
predictor in eval mode with the BatchNorm statistics it is evaluated with, and the age scaling back
from standardised ages. FILE's suffix picks the format:

- .pt2: torch.export (`torch.export.load(FILE).module()`), N, H and W dynamic;
- .onnx: ONNX through torch.onnx's exporter (needs the onnx and onnxscript packages; run it with
  onnxruntime), N, H and W dynamic.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import DuiitConfigError
from .io import atomic_path

FORMATS = (".pt2", ".onnx")
MIN_SIDE = 8           # the smallest slice side the exported module accepts
EXAMPLE_SIDE = 64      # the example slices export traces with (any size works after)


class DeployablePredictor(nn.Module):
    """HU slices (N, H, W) → ages in years (N,)."""

    def __init__(self, predictor: nn.Module, ct_window: tuple, image_size: int, age_mean: float,
                 age_std: float):
        super().__init__()
        self.predictor = copy.deepcopy(predictor).float().eval()
        for p in self.predictor.parameters():
            p.requires_grad_(False)
        level, width = (float(v) for v in ct_window)
        self.window_low, self.window_width = level - width / 2.0, width
        self.image_size = int(image_size)
        self.age_mean, self.age_std = float(age_mean), float(age_std)

    def forward(self, hu: torch.Tensor) -> torch.Tensor:
        # intensity.ct_window, then data.datasets.resize_slices: antialiasing is what training did when
        # shrinking, and where a slice is enlarged it changes the result by about one float32 ulp.
        x = ((hu - self.window_low) / self.window_width).clamp(0.0, 1.0) * 2.0 - 1.0
        x = F.interpolate(x[:, None], size=(self.image_size, self.image_size), mode="bilinear",
                          align_corners=False, antialias=True)
        return self.predictor(x).squeeze(1) * self.age_std + self.age_mean


def deployable(trainer) -> DeployablePredictor:
    """The trainer's evaluated predictor with its preprocessing, on the CPU."""
    module = DeployablePredictor(trainer.eval_predictor, trainer.cfg.ct_window, trainer.cfg.image_size,
                                 trainer.age_mean, trainer.age_std)
    return module.to(memory_format=torch.contiguous_format).cpu().eval()


def describe(trainer) -> dict:
    """What the file holds, stored beside the program (torch.export's extra files)."""
    cfg = trainer.cfg
    return {"input": "CT slices in HU, float32 (N, H, W); output: ages in years (N,)",
            "setting": cfg.setting, "predictor": cfg.predictor, "image_size": cfg.image_size,
            "ct_window": list(cfg.ct_window), "age_mean": trainer.age_mean, "age_std": trainer.age_std,
            "epochs": trainer.epoch, "selected_epoch": None if trainer.best is None else trainer.best["epoch"] + 1}


def _dynamic_shapes() -> tuple:
    """Slices (N, H, W): every dimension free, each side at least MIN_SIDE."""
    dim = torch.export.Dim
    return ({0: dim("N", min=1), 1: dim("H", min=MIN_SIDE), 2: dim("W", min=MIN_SIDE)},)


def export_predictor(trainer, path) -> Path:
    """Write the deployable predictor to `path` (format by suffix, FORMATS), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DuiitConfigError(f"--predictor {path}: the file name must end in {' or '.join(FORMATS)} "
                               "(torch.export or ONNX)")
    module = deployable(trainer)
    example = torch.zeros(2, EXAMPLE_SIDE, EXAMPLE_SIDE)
    if suffix == ".onnx":
        return _onnx(module, example, path)
    with torch.no_grad():
        program = torch.export.export(module, (example,), dynamic_shapes=_dynamic_shapes())
    with atomic_path(path) as tmp:
        torch.export.save(program, str(tmp), extra_files={"duiit.json": json.dumps(describe(trainer))})
    return path


def _onnx(module: nn.Module, example: torch.Tensor, path: Path) -> Path:
    import importlib.util
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise DuiitConfigError(f"--predictor {path}: ONNX export needs {' and '.join(missing)} "
                               f"(pip install {' '.join(missing)}); a .pt2 file needs nothing more")
    with atomic_path(path) as tmp, torch.no_grad():
        torch.onnx.export(module, (example,), str(tmp), input_names=["hu"], output_names=["age"],
                          dynamo=True, dynamic_shapes=_dynamic_shapes(), verbose=False)
    return path
