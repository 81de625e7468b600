"""Is DUIIT's translator worth more to a fresh predictor? For each finished DUIIT cell of a
`duiit experiment` folder, its final G is frozen and a fresh P is trained on real CT + G(source) by the
two-stage CycleGAN arm's stage 2 (the same predictor budget, seed, validation choice and BatchNorm
statistics as every arm), then compared with the cell's own co-trained P on cross-fitted validation.
Each refit cell takes ~70 s on one thread (no translator steps: G comes whole from the DUIIT cell).

    python bench/refit_probe.py EXPERIMENT_DIR OUT_DIR [--cohorts 5] [--seeds 3] [--workers 2]

OUT_DIR mirrors EXPERIMENT_DIR's layout (cohort-C[/seed-S]/MIX-CT-MRI/result.json); the comparison
at the end is `bench/paired_runs.py`'s on cross-fitted validation. Finished cells are skipped. The result files hold test MSE too:
read the comparison, which prints validation only, before anything else.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from duiit_fast.eval.experiment_report import cohort_dir_of   # the experiment's own layout

ARM = "MIX-CT-MRI"
STAGE_TWO_SPEC = Path("CYCLEGAN-CT-MRI") / ".result-job.json"   # that arm's config, written by the experiment


def refit_cell(experiment: Path, out: Path, cohort: int, seed: int) -> dict:
    from duiit_fast.config import TrainConfig
    from duiit_fast.eval.evaluate import cross_fitted_val_mse
    from duiit_fast.io import write_json
    from duiit_fast.train.checkpoint import read_checkpoint
    from duiit_fast.train.trainer import Trainer

    class FrozenTranslatorTrainer(Trainer):
        def translator_budget(self) -> int:
            return 0   # no translator-only steps: G is the DUIIT cell's, loaded below

    src, dst = cohort_dir_of(experiment, cohort, seed), cohort_dir_of(out, cohort, seed) / ARM
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


def compare(experiment: Path, out: Path) -> None:
    """Seed-mean cross-fitted validation MSE per cohort, co-trained P (A) vs refit P (B): validation only."""
    from paired_runs import finished_cells, paired   # bench/ is this script's folder
    row = paired(finished_cells(experiment), finished_cells(out), "val_crossfit")[ARM]
    for c, n, a, b in zip(row["cohorts"], row["seeds"], row["a"], row["b"]):
        print(f"cohort {c} ({n} seeds): co-trained {a:.1f}, refit {b:.1f}")
    print(f"mean co-trained {row['mean_a']:.1f}, refit {row['mean_b']:.1f}; refit lower on "
          f"{row['b_lower']}/{len(row['cohorts'])}" + (f", paired t p {row['t_test_p']:.3f}" if "t_test_p" in row else ""))


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
            if not (cohort_dir_of(args.out, c, s) / ARM / "result.json").exists()]
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
    missing = [(c, s) for c, s in todo if not (cohort_dir_of(args.out, c, s) / ARM / "result.json").exists()]
    if missing:
        raise SystemExit(f"refit cells without a result (cohort, seed): {missing}")
    compare(args.experiment, args.out)


if __name__ == "__main__":
    main()
