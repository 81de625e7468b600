"""Where an experiment arm's error comes from, for every cell of a `duiit experiment` folder: the
test split's error parts (eval.evaluate.error_parts: slope of the predictions on the true ages,
bias, scatter; cells written since this was added also carry them in result.json) and, for the
translator arms, the same parts of P read on G(source) against the source labels (every 7th slice).

    python bench/error_decomposition.py RUN_DIR [--cohorts 5] [--first 0] [--arms PURE-CT MIX-CT-MRI ...]
"""
from __future__ import annotations

import argparse

import torch

from duiit_fast.eval.evaluate import error_parts
from duiit_fast.experiment import DEFAULT_ARMS
from duiit_fast.train.trainer import Trainer


def line_fit(pred: torch.Tensor, truth: torch.Tensor) -> dict:
    return {"mse": float((pred - truth).double().square().mean()), **error_parts(pred, truth)}


def decompose(cell_dir: str) -> dict:
    trainer = Trainer.load(f"{cell_dir}/checkpoint.pt")
    test = trainer.data.split("test")
    out = {"test": line_fit(trainer.predict(test.images), test.ages)}
    for k in trainer.cfg.sources if "G" in trainer.nets else ():
        src = trainer.data.sources[k]
        idx = torch.arange(0, len(src), 7)
        out[f"P on G({k})"] = line_fit(trainer.predict(trainer.translate(src.images[idx], k)), src.ages[idx])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--cohorts", type=int, default=5, help="cohorts first .. cohorts-1")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS))
    args = ap.parse_args()
    for c in range(args.first, args.cohorts):
        for arm in args.arms:
            parts = decompose(f"{args.run_dir}/cohort-{c}/{arm}")
            print(f"cohort {c} {arm:16s} " + " | ".join(
                f"{where}: MSE {f['mse']:.1f}, slope {f['slope']:.2f}, bias {f['bias']:+.1f}, scatter {f['scatter']:.1f}"
                for where, f in parts.items()), flush=True)


if __name__ == "__main__":
    main()
