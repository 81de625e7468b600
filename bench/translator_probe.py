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
import dataclasses
import json
import time
from pathlib import Path

import torch

from duiit_fast.experiment import cohort_config, experiment_config
from duiit_fast.train.trainer import Trainer


def probe(base, cohort: int, steps: list[int], reader: str | None, out_dir: Path) -> list[dict]:
    cfg = dataclasses.replace(cohort_config(base, cohort, out_dir), setting="MIX-CT-MRI", reader_path=reader,
                              translator_warmup_steps=0)
    trainer = Trainer(cfg, progress=False)
    trainer.prepare()   # the CT reader (trained unless --reader gives an experiment's)
    rows, start = [], time.perf_counter()
    for n in sorted(steps):
        trainer.cfg = dataclasses.replace(trainer.cfg, translator_warmup_steps=n)
        trainer.warm_up()   # continues from the previous count
        rows.append({"steps": n, "seconds": round(time.perf_counter() - start, 1), **trainer.label_cues()})
        print(json.dumps(rows[-1]), flush=True)
    return rows


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
    base = experiment_config().with_settings(args.set)   # typed like `duiit experiment --set`
    tag = "-".join(args.set) or "defaults"
    rows = probe(base, args.cohort, args.steps, args.reader, Path("runs") / f"probe-{tag}-c{args.cohort}")
    if args.out:
        Path(args.out).write_text(json.dumps({"cohort": args.cohort, "set": args.set, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
