"""How much does each arm's epoch choice depend on the number of validation patients? Validation data only.

Every cell of `duiit experiment` (commit 3007ebc on) records each validation patient's error after every epoch.
For k validation patients, this draws `--draws` random k-patient subsets per cell, keeps the epoch whose
slice-weighted MSE on the subset is lowest, and scores that epoch on the other validation patients: the MSE a user
with k validation patients would get from the epoch choice, estimated without the test set (unbiased over draws,
noisier for large k, where few patients are left to score on). k = 0 is the last epoch, no choice.
Per arm it reports the mean over cohorts; for DUIIT (MIX-CT-MRI) also its share of the PURE-CT → ORACLE gap and its
lead over NAIVE at each k, the same quantities the protocol's verdict reads on test.

    python bench/validation_size.py RUN_FOLDER [--k 0 3 6 9 12 15] [--draws 500] [--json out.json]
"""
import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np


def _beside(name: str):
    """A script beside this one, loaded by path: no sys.path entry (bench/ has its own conftest.py)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


finished_cells = _beside("paired_runs").finished_cells


def per_epoch_patient_errors(result: dict):
    """(epochs × patients) mean squared error per patient, and each patient's slice count."""
    history = result["history"]
    errors = np.array([h["val_patient_mse"] for h in history], dtype=float)
    slices = np.array(history[0]["val_patient_slices"], dtype=float)
    return errors, slices


def chosen_epoch_mse(errors, slices, k: int, draws: int, rng) -> float:
    """Mean over draws of the held-out MSE of the epoch chosen on k random patients (k = 0: last epoch)."""
    n = errors.shape[1]
    if k == 0:
        return float(errors[-1] @ slices / slices.sum())
    scores = []
    for _ in range(draws):
        order = rng.permutation(n)
        chosen, held = order[:k], order[k:]
        w = slices[chosen]
        epoch = int(np.argmin(errors[:, chosen] @ w / w.sum()))
        scores.append(errors[epoch, held] @ slices[held] / slices[held].sum())
    return float(np.mean(scores))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--k", type=int, nargs="+", default=[0, 3, 6, 9, 12, 15])
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    cells = finished_cells(args.folder)
    table = {}   # arm → k → [one value per cohort, mean over the cohort's training seeds]
    for arm, cohorts in sorted(cells.items()):
        for k in args.k:
            per_cohort = []
            for c in sorted(cohorts):
                values = [chosen_epoch_mse(*per_epoch_patient_errors(r), k, args.draws, rng)
                          for r in cohorts[c].values() if "val_patient_mse" in r["history"][0]]
                if values:
                    per_cohort.append(float(np.mean(values)))
            table.setdefault(arm, {})[str(k)] = per_cohort
    out = {"folder_cohorts": {arm: sorted(c) for arm, c in cells.items()}, "draws": args.draws,
           "held_out_val_mse": table}
    print("held-out validation MSE of the epoch chosen on k patients (mean over cohorts):")
    print("arm".ljust(18) + "".join(f"k={k}".rjust(9) for k in args.k))
    for arm, row in table.items():
        print(arm.ljust(18) + "".join(f"{np.mean(row[str(k)]):9.1f}" for k in args.k))
    if {"PURE-CT", "ORACLE-CT-MRI", "MIX-CT-MRI"} <= set(table):
        shares, leads = {}, {}
        for k in args.k:
            pure, oracle, duiit = (np.mean(table[a][str(k)]) for a in ("PURE-CT", "ORACLE-CT-MRI", "MIX-CT-MRI"))
            shares[str(k)] = float((pure - duiit) / (pure - oracle))
            if "NAIVE-CT-MRI" in table:
                leads[str(k)] = float(np.mean(np.subtract(table["NAIVE-CT-MRI"][str(k)], table["MIX-CT-MRI"][str(k)])))
        out["duiit_gap_share"], out["duiit_lead_over_naive"] = shares, leads
        print("DUIIT's gap share: " + ", ".join(f"k={k} {100 * shares[str(k)]:.0f} %" for k in args.k))
        if leads:
            print("NAIVE − DUIIT:     " + ", ".join(f"k={k} {leads[str(k)]:.1f}" for k in args.k))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
