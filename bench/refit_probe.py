"""Is DUIIT's translator worth more to a fresh predictor? For each finished DUIIT cell of a
`duiit experiment` folder, its final G is frozen and a fresh P is trained on real CT + G(source) by the
two-stage CycleGAN arm's stage 2 (the same predictor budget, seed, validation choice and BatchNorm
statistics as every arm), then compared with the cell's own co-trained P on cross-fitted validation.
Each refit cell takes ~70 s on one thread (no translator steps: G comes whole from the DUIIT cell).

    python bench/refit_probe.py EXPERIMENT_DIR OUT_DIR [--cohorts 5] [--seeds 3] [--workers 2]

OUT_DIR mirrors EXPERIMENT_DIR's layout (cohort-C[/seed-S]/MIX-CT-MRI/result.json), so the cells
compare with `bench/paired_runs.py`. Finished cells are skipped. The result files hold test MSE too:
read the comparison, which prints validation only, before anything else.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ARM = "MIX-CT-MRI"
STAGE_TWO_SPEC = Path("CYCLEGAN-CT-MRI") / ".result-job.json"   # that arm's config, written by the experiment


def cell_dir(root: Path, cohort: int, seed: int) -> Path:
    return root / f"cohort-{cohort}" / (f"seed-{seed}" if seed else "")


def refit_cell(experiment: Path, out: Path, cohort: int, seed: int) -> dict:
    from duiit_fast.config import TrainConfig
    from duiit_fast.eval.evaluate import cross_fitted_val_mse
    from duiit_fast.io import write_json
    from duiit_fast.train.checkpoint import read_checkpoint
    from duiit_fast.train.trainer import Trainer

    class FrozenTranslatorTrainer(Trainer):
        def translator_budget(self) -> int:
            return 0   # no translator-only steps: G is the DUIIT cell's, loaded below

    src, dst = cell_dir(experiment, cohort, seed), cell_dir(out, cohort, seed) / ARM
    spec = json.loads((src / STAGE_TWO_SPEC).read_text())
    cfg = dataclasses.replace(TrainConfig.from_dict(spec["config"]), out_dir=str(dst), translator_init=None,
                              reader_path=str(src / "readers.pt"), cache_dir=str(out / ".phantom-cache"))
    start = time.perf_counter()
    trainer = FrozenTranslatorTrainer(cfg, progress=False)
    trainer._load_translators(read_checkpoint(src / ARM / "checkpoint.pt"))
    trainer.fit()
    result = {"setting": f"{ARM} refit: a fresh P on the DUIIT cell's final G (two-stage CycleGAN's stage 2)",
              "test": trainer.evaluate("test"), "val": trainer.evaluate("val"),
              "selected_epoch": trainer.best["epoch"] if trainer.best else None,
              "val_crossfit_mse": cross_fitted_val_mse(trainer.history), "history": trainer.history,
              "seconds": round(time.perf_counter() - start, 1), "label_cues": trainer.label_cues()}
    write_json(dst / "result.json", result)
    return result


def compare(experiment: Path, out: Path, cohorts: int, seeds: int) -> None:
    """Seed-mean cross-fitted validation MSE per cohort, refit vs co-trained P (validation only)."""
    lower, means = 0, []
    for c in range(cohorts):
        pair = []
        for root in (out, experiment):
            cells = [json.loads((cell_dir(root, c, s) / ARM / "result.json").read_text()) for s in range(seeds)]
            pair.append(statistics.mean(d["val_crossfit_mse"] for d in cells))
        lower += pair[0] < pair[1]
        means.append(pair)
        print(f"cohort {c}: refit {pair[0]:.1f}, co-trained {pair[1]:.1f}")
    print(f"mean refit {statistics.mean(m[0] for m in means):.1f}, co-trained "
          f"{statistics.mean(m[1] for m in means):.1f}; refit lower on {lower}/{cohorts}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--cohorts", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cell", type=int, nargs=2, metavar=("COHORT", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cell:   # one cell, in its own process
        refit_cell(args.experiment, args.out, *args.cell)
        return
    todo = [(c, s) for c in range(args.cohorts) for s in range(args.seeds)
            if not (cell_dir(args.out, c, s) / ARM / "result.json").exists()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    running: list[subprocess.Popen] = []
    for c, s in todo:
        while len(running) >= args.workers:
            time.sleep(1)
            running = [p for p in running if p.poll() is None]
        running.append(subprocess.Popen([sys.executable, __file__, str(args.experiment), str(args.out),
                                         "--cell", str(c), str(s)], env=env))
    for p in running:
        p.wait()
    missing = [(c, s) for c, s in todo if not (cell_dir(args.out, c, s) / ARM / "result.json").exists()]
    if missing:
        raise SystemExit(f"refit cells without a result (cohort, seed): {missing}")
    compare(args.experiment, args.out, args.cohorts, args.seeds)


if __name__ == "__main__":
    main()
