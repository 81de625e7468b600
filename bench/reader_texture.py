"""How much of the label-cue slope is texture? The CT reader of an experiment cohort read on the
source patients' true CT renderings, on the same renderings smoothed by a 3×3 binomial filter, and
on G(MRI) of the cohort's warm-up and DUIIT checkpoints, with the pixel-scale (Laplacian) energy of
each inside the head. Training-split source patients only: nothing from validation or test.

    python bench/reader_texture.py --experiment runs/exp --cohort 0 [--every 5]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from duiit_fast.eval.label_cues import read_ages
from duiit_fast.experiment import cohort_config, experiment_config
from duiit_fast.train.checkpoint import read_checkpoint
from duiit_fast.train.trainer import Trainer

LAPLACIAN = torch.tensor([[0., 1., 0.], [1., -4., 1.], [0., 1., 0.]]).view(1, 1, 3, 3)
BINOMIAL = (torch.tensor([1., 2., 1.])[:, None] * torch.tensor([1., 2., 1.])[None, :] / 16).view(1, 1, 3, 3)


def pixel_scale_energy(images: torch.Tensor) -> float:
    """Mean squared Laplacian over unsaturated pixels (air and bone sit at ±1 in the brain window)."""
    inside = (images > -0.95) & (images < 0.95)
    return float(F.conv2d(images.float(), LAPLACIAN, padding=1)[inside].square().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", required=True, help="a `duiit experiment` folder")
    ap.add_argument("--cohort", type=int, default=0)
    ap.add_argument("--every", type=int, default=5, help="read every n-th source slice")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cohort_dir = Path(args.experiment) / f"cohort-{args.cohort}"
    cfg = dataclasses.replace(cohort_config(experiment_config(), args.cohort, Path("runs") / "reader-texture"),
                              setting="MIX-CT-MRI", reader_path=str(cohort_dir / "readers.pt"),
                              translator_warmup_steps=0)
    trainer = Trainer(cfg, progress=False)
    trainer._prepare()
    source, as_ct = trainer.data.sources["mri"], trainer.data.sources_as_ct["mri"]
    idx = torch.arange(0, len(source), args.every)
    ages = source.ages[idx].double().numpy()

    def row(images):
        pred = read_ages(trainer.readers["cues"], images, "cpu").double().numpy()
        return {"reader_slope": float(np.polyfit(ages, pred, 1)[0]),
                "reader_mse": float(np.mean((pred - ages) ** 2)), "pixel_scale_energy": pixel_scale_energy(images)}

    true_ct = as_ct.images[idx]
    rows = {"true CT": row(true_ct),
            "true CT, 3x3 binomial": row(F.conv2d(F.pad(true_ct, (1, 1, 1, 1), mode="replicate"), BINOMIAL))}
    for name, path in (("G(MRI), warm-up", cohort_dir / "warmup" / "checkpoint.pt"),
                       ("G(MRI), DUIIT", cohort_dir / "MIX-CT-MRI" / "checkpoint.pt")):
        if path.is_file():
            trainer.nets["G"].load_state_dict(read_checkpoint(path)["nets"]["G"])
            with torch.no_grad():
                translated = trainer.translate(source.images[idx], "mri")
            rows[name] = {**row(translated), "pixel_l1": float((translated - true_ct).abs().mean())}
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
