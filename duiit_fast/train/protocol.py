"""The paper's protocol: one setting over several random splits, reported as mean ± std."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..errors import DuiitConfigError
from ..io import write_json
from .checkpoint import CHECKPOINT_NAME
from .trainer import Trainer


def run_splits(cfg, n_splits: int = 10, resume: bool = False, overwrite: bool = False,
               progress: bool = True) -> dict:
    """Train and test cfg on split seeds 0..n-1, each in out_dir/split-<seed>. With dataset folders
    the seed re-draws the CT split; with the phantom it re-draws the cohort. resume continues the
    splits that have a checkpoint and starts the others."""
    if n_splits < 1:
        raise DuiitConfigError(f"the number of splits must be at least 1, got {n_splits}")
    runs = []
    for seed in range(n_splits):
        run_cfg = dataclasses.replace(cfg, split_seed=seed, out_dir=str(Path(cfg.out_dir) / f"split-{seed}"))
        if cfg.ct is None:
            run_cfg.phantom = dataclasses.replace(cfg.phantom, seed=seed)
        trainer = Trainer(run_cfg, progress=progress)
        trainer.fit(resume=resume and (Path(run_cfg.out_dir) / CHECKPOINT_NAME).exists(), overwrite=overwrite)
        runs.append({"split_seed": seed, **trainer.evaluate("test")})
    mse = np.array([r["mse"] for r in runs])
    summary = {"setting": cfg.setting, "split": runs[0]["split"], "n_splits": n_splits,
               "mse_mean": float(mse.mean()), "mse_std": float(mse.std(ddof=1)) if n_splits > 1 else 0.0,
               "runs": runs}
    summary["table"] = (f"{cfg.setting}: test MSE {summary['mse_mean']:.2f} ± {summary['mse_std']:.2f} years² "
                        f"over {n_splits} split(s) ({summary['split']}); per split: "
                        + ", ".join(f"{m:.1f}" for m in mse))
    write_json(Path(cfg.out_dir) / "splits.json", summary)
    return summary
