"""Is the label-cue reader reading anatomy or texture? The plain CT reader of an experiment (its
readers.pt) against a reader trained the same way with texture augmentation (reader_augment: blur
σ ≤ 1 px, noise sd ≤ 0.1), on one experiment's cohorts:

- the source patients' true CT renderings (training split: the readers were trained on them),
  plain and blurred by a 3×3 binomial filter;
- the cohort's validation CT patients (real CT that neither reader saw);
- G(MRI) of the recorded warm-up, two-stage CycleGAN and DUIIT checkpoints of every training seed.

Nothing from the test split is read.

    python bench/reader_robustness.py --experiment runs/exp --cohorts 0 1 2 3 4 [--seeds 3] [--out r.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from duiit_fast.eval.label_cues import read_ages, train_reader
from duiit_fast.experiment import cohort_config, experiment_config
from duiit_fast.train.checkpoint import load_reader, read_checkpoint
from duiit_fast.train.trainer import Trainer

BINOMIAL = (torch.tensor([1., 2., 1.])[:, None] * torch.tensor([1., 2., 1.])[None, :] / 16).view(1, 1, 3, 3)
CHECKPOINTS = {"warm-up": "warmup", "CycleGAN": "CYCLEGAN-CT-MRI", "DUIIT": "MIX-CT-MRI"}


def slope_and_mse(reader, images, ages) -> dict:
    pred = read_ages(reader, images, "cpu").double().numpy()
    true = ages.double().numpy()
    return {"slope": float(np.polyfit(true, pred, 1)[0]), "mse": float(np.mean((pred - true) ** 2))}


def seed_dir(cohort_dir: Path, seed_index: int) -> Path:
    return cohort_dir if seed_index == 0 else cohort_dir / f"seed-{seed_index}"


def measure_cohort(experiment: Path, cohort: int, seeds: int, every: int, work: Path) -> dict:
    cohort_dir = experiment / f"cohort-{cohort}"
    rows: dict = {}
    for s in range(seeds):
        folder = seed_dir(cohort_dir, s)
        cfg = dataclasses.replace(cohort_config(experiment_config(), cohort, work / f"c{cohort}", seed_index=s),
                                  setting="MIX-CT-MRI", reader_path=str(folder / "readers.pt"),
                                  translator_warmup_steps=0)
        trainer = Trainer(cfg, progress=False)
        trainer.prepare()
        data = trainer.data
        sets = [data.ct_train, *data.sources_as_ct.values()]
        t0 = time.perf_counter()
        readers = {"plain": load_reader(folder / "readers.pt", "cues", "cpu"),
                   "augmented": train_reader(torch.cat([d.images for d in sets]), torch.cat([d.ages for d in sets]),
                                             cfg.reader_steps, cfg.seed + 101, "cpu", augment=True)}
        train_s = time.perf_counter() - t0
        source, as_ct = data.sources["mri"], data.sources_as_ct["mri"]
        idx = torch.arange(0, len(source), every)
        ages, true_ct = source.ages[idx], as_ct.images[idx]
        blurred = F.conv2d(F.pad(true_ct, (1, 1, 1, 1), mode="replicate"), BINOMIAL)
        images = {"true CT (train)": true_ct, "true CT, 3x3 binomial": blurred}
        for name, sub in CHECKPOINTS.items():
            path = folder / sub / "checkpoint.pt"
            if path.is_file():
                trainer.nets["G"].load_state_dict(read_checkpoint(path)["nets"]["G"])
                with torch.no_grad():
                    images[f"G(MRI), {name}"] = trainer.translate(source.images[idx], "mri")
        seed_rows = {"augmented reader training s": train_s}
        for role, reader in readers.items():
            seed_rows[role] = {name: slope_and_mse(reader, x, ages) for name, x in images.items()}
            seed_rows[role]["validation CT"] = slope_and_mse(reader, data.ct_val.images, data.ct_val.ages)
        rows[f"seed {s}"] = seed_rows
        print(json.dumps({"cohort": cohort, "seed": s, **seed_rows}), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", required=True, type=Path, help="a `duiit experiment` folder")
    ap.add_argument("--cohorts", type=int, nargs="+", default=[0])
    ap.add_argument("--seeds", type=int, default=1, help="training seeds of each cohort to read")
    ap.add_argument("--every", type=int, default=5, help="read every n-th source slice")
    ap.add_argument("--work", type=Path, default=Path("runs/reader-robustness"), help="phantom cache folder")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    result = {f"cohort {c}": measure_cohort(args.experiment, c, args.seeds, args.every, args.work)
              for c in args.cohorts}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
