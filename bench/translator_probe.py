"""Does a translator setting keep the label cues by itself? Translator-only training (λ = 0, no
predictor: the warm-up and CycleGAN's stage 1) on one phantom cohort of `duiit experiment`, with
the label-cue metrics (CT reader's slope and MSE on G(MRI), pixel L1 against the same patients
rendered as CT, domain FID) after each listed step count. A quick screen before a 5-cohort run:
it reads nothing from validation or test.

    python bench/translator_probe.py --cohort 0 --steps 250 500 1000 --set generator=unet \\
        [--reader COHORT_DIR/readers.pt] [--out probe.json]
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import time
from pathlib import Path

import torch

from duiit_fast.experiment import cohort_config, experiment_config
from duiit_fast.train.trainer import Trainer


def probe(cohort: int, steps: list[int], overrides: dict, reader: str | None, out_dir: Path) -> list[dict]:
    base = dataclasses.replace(experiment_config(), **overrides)
    cfg = dataclasses.replace(cohort_config(base, cohort, out_dir), setting="MIX-CT-MRI", reader_path=reader,
                              translator_warmup_steps=0)
    trainer = Trainer(cfg, progress=False)
    trainer._prepare()   # the CT reader (trained unless --reader gives an experiment's)
    rows, start = [], time.perf_counter()
    for n in sorted(steps):
        trainer.cfg = dataclasses.replace(trainer.cfg, translator_warmup_steps=n)
        trainer.warm_up()   # continues from the previous count
        rows.append({"steps": n, "seconds": round(time.perf_counter() - start, 1), **trainer.label_cues()})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text   # a bare word: generator=unet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", type=int, default=0)
    ap.add_argument("--steps", type=int, nargs="+", default=[250, 500, 1000])
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--reader", help="readers.pt of the cohort's experiment folder (else one is trained)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="JSON file for the rows")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    tag = "-".join(f"{k}={v}" for k, v in overrides.items()) or "defaults"
    rows = probe(args.cohort, args.steps, overrides, args.reader, Path("runs") / f"probe-{tag}-c{args.cohort}")
    if args.out:
        Path(args.out).write_text(json.dumps({"cohort": args.cohort, "set": overrides, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
