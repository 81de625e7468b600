"""The paper's Tables 2–7 as analogues of one `duiit experiment` run, with the paper's numbers beside.

The paper (its section 4 and appendix C) reports test errors of 10 random splits of
its MRI/CT/PET archive; ours are phantom cohorts, in years² as well but of another population, so
only the *comparisons* carry over: which method is lowest, whether DUIIT beats each baseline at the
paper's significance threshold (0.1, paired t-test). Each table ends with one sentence, computed
from the numbers, saying whether our run agrees with the paper's claim. Columns whose arm was not
run show "not run".
"""
from __future__ import annotations

import math

import numpy as np

from ..arms import REFERENCE_ARM

SIGNIFICANCE = 0.1   # the paper's threshold (appendix C)

# (mean, std) of the paper's prediction errors; Table 5: IS (mean, std) and FID; Tables 6–7: p-values.
PAPER_TABLE2 = {"PURE-CT": (103.88, 64.27), "MIX-CT-MRI": (76.91, 8.31), "MIX-CT-PET": (75.75, 20.52),
                "MIX-CT-MRI-PET": (71.37, 18.92)}
PAPER_TABLE3 = {
    "MRI": {"TL": (91.52, 13.88), "MTL": (99.26, 22.12), "DA": (88.13, 21.86), "CycleGAN": (147.06, 79.89),
            "DUIIT": (76.91, 8.31)},
    "PET": {"TL": (102.08, 15.37), "MTL": (92.94, 28.26), "DA": (148.72, 40.16), "CycleGAN": (96.70, 42.44),
            "DUIIT": (75.75, 20.52)},
}
PAPER_TABLE4 = {"Simple Augment": (96.80, 26.00), "AutoAugment": (84.65, 15.28), "Random Erasing": (84.87, 8.55),
                "DUIIT (MRI→CT)": (76.91, 8.31), "DUIIT (PET→CT)": (75.75, 20.52)}
PAPER_TABLE5 = {"CycleGAN": {"IS": (3.49, 0.15), "FID": 40.94},
                "DUIIT": {"IS": (3.92, 0.07), "FID": 63.17}}   # the paper prints the IS std as "007"
PAPER_TABLE6_7 = {   # p-values of DUIIT (MRI→CT: Table 6, PET→CT: Table 7) against each method
    "MRI": {"PURE-CT": 0.020, "TL": 0.017, "MTL": 0.000, "DA": 0.010, "CycleGAN": 0.013, "Simple Augment": 0.013,
            "AutoAugment": 0.000, "Random Erasing": 0.089},
    "PET": {"PURE-CT": 0.026, "TL": 0.001, "MTL": 0.015, "DA": 0.000, "CycleGAN": 0.003, "Simple Augment": 0.025,
            "AutoAugment": 0.000, "Random Erasing": 0.043},
}

BASELINE_ARMS = {"TL": "TL-CT-{src}", "MTL": "MTL-CT-{src}", "DA": "DANN-CT-{src}", "CycleGAN": "CYCLEGAN-CT-{src}",
                 "DUIIT": "MIX-CT-{src}"}
AUGMENT_ARMS = {"Simple Augment": "AUG-SIMPLE", "AutoAugment": "AUG-AUTO", "Random Erasing": "AUG-ERASING"}


def _mean_std(values) -> tuple[float, float]:
    v = np.asarray(values, float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _ours(arms: dict, arm: str) -> str:
    if arm not in arms:
        return "not run"
    m, s = _mean_std(arms[arm]["test_mse"])
    return f"{m:.1f} ± {s:.1f}"


def _paper(cell) -> str:
    return f"{cell[0]:.2f} ± {cell[1]:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _lowest(arms: dict, names: dict) -> tuple[str, list[str]]:
    """The paper name of the arm with the lowest mean test MSE among those run, and those run."""
    run = [name for name, arm in names.items() if arm in arms]
    best = min(run, key=lambda name: np.mean(arms[names[name]]["test_mse"])) if run else ""
    return best, run


def table2(arms: dict) -> list[str]:
    settings = list(PAPER_TABLE2)
    lines = ["### Table 2 analogue: data settings (test MSE, years²)", ""]
    lines += _table(["", *settings], [["ours (phantom)", *(_ours(arms, s) for s in settings)],
                                      ["paper", *(_paper(PAPER_TABLE2[s]) for s in settings)]])
    mixes = [s for s in settings[1:] if s in arms]
    if REFERENCE_ARM not in arms or not mixes:
        return lines + ["", "Paper: every MIX setting is below PURE-CT. Here: PURE-CT or every MIX setting was not run."]
    pure = np.mean(arms[REFERENCE_ARM]["test_mse"])
    below = [s for s in mixes if np.mean(arms[s]["test_mse"]) < pure]
    verdict = "agrees" if len(below) == len(mixes) else "disagrees"
    return lines + ["", f"Paper: every MIX setting is below PURE-CT. Here {len(below)} of {len(mixes)} run "
                        f"({', '.join(below) or 'none'}) — our run {verdict} on the means."]


def table3(arms: dict) -> list[str]:
    lines = ["### Table 3 analogue: DUIIT against TL, MTL, domain adaptation (DANN) and two-stage CycleGAN", ""]
    header = ["source", "", *PAPER_TABLE3["MRI"]]
    rows, sentences = [], []
    for src in PAPER_TABLE3:
        names = {k: v.format(src=src) for k, v in BASELINE_ARMS.items()}
        rows.append([f"{src} → CT", "ours", *(_ours(arms, names[k]) for k in PAPER_TABLE3[src])])
        rows.append(["", "paper", *(_paper(PAPER_TABLE3[src][k]) for k in PAPER_TABLE3[src])])
        best, run = _lowest(arms, names)
        if "DUIIT" not in run or len(run) < 2:
            sentences.append(f"{src} → CT: DUIIT and at least one baseline were not both run.")
        else:
            sentences.append(f"{src} → CT: the paper's DUIIT is lowest of the five; here the lowest of the "
                             f"{len(run)} run is {best} — " + ("agrees." if best == "DUIIT" else "disagrees."))
    return lines + _table(header, rows) + [""] + [" ".join(sentences)]


def table4(arms: dict) -> list[str]:
    cols = {**AUGMENT_ARMS, "DUIIT (MRI→CT)": "MIX-CT-MRI", "DUIIT (PET→CT)": "MIX-CT-PET"}
    lines = ["### Table 4 analogue: DUIIT against augmentation of the training CT", ""]
    lines += _table(["", *cols], [["ours (phantom)", *(_ours(arms, a) for a in cols.values())],
                                  ["paper", *(_paper(PAPER_TABLE4[c]) for c in cols)]])
    augs = [a for a in AUGMENT_ARMS.values() if a in arms]
    duiits = [a for a in ("MIX-CT-MRI", "MIX-CT-PET") if a in arms]
    if not augs or not duiits:
        return lines + ["", "Paper: both DUIIT settings below all three augmentations. Here: not enough arms run."]
    best_aug = min(np.mean(arms[a]["test_mse"]) for a in augs)
    beating = [d for d in duiits if np.mean(arms[d]["test_mse"]) < best_aug]
    verdict = "agrees" if len(beating) == len(duiits) else "disagrees"
    return lines + ["", f"Paper: both DUIIT settings are below all three augmentations. Here {len(beating)} of "
                        f"{len(duiits)} DUIIT arms run are below the best of the {len(augs)} augmentations run — "
                        f"our run {verdict} on the means."]


def table5(arms: dict) -> list[str]:
    pairs = {"CycleGAN": "CYCLEGAN-CT-MRI", "DUIIT": "MIX-CT-MRI"}
    lines = ["### Table 5 analogue: image quality of G(MRI) against real CT", ""]

    def metric(arm, key, digits):
        if arm not in arms or key not in arms[arm]:
            return "–"
        m, s = _mean_std(arms[arm][key])
        return f"{m:.{digits}f} ± {s:.{digits}f}"
    rows = [[name, metric(arm, "inception_score", 2), metric(arm, "inception_fid", 1), metric(arm, "domain_fid", 2),
             f"{PAPER_TABLE5[name]['IS'][0]:.2f} ± {PAPER_TABLE5[name]['IS'][1]:.2f}", f"{PAPER_TABLE5[name]['FID']:.2f}"]
            for name, arm in pairs.items()]
    lines += _table(["method (MRI → CT)", "IS ↑ (ours)", "FID ↓ (ours)", "domain FID ↓ (ours)", "IS (paper)",
                     "FID (paper)"], rows)
    have = all(a in arms and "domain_fid" in arms[a] for a in pairs.values())
    sentence = "Paper: DUIIT has the higher (better) IS and the higher (worse) FID than CycleGAN."
    if have:
        duiit, cyc = (np.mean(arms[a]["domain_fid"]) for a in (pairs["DUIIT"], pairs["CycleGAN"]))
        sentence += (f" Here DUIIT's domain FID is {'higher' if duiit > cyc else 'lower'} than CycleGAN's "
                     f"({duiit:.2f} vs {cyc:.2f}) — " + ("agrees with the paper's FID order." if duiit > cyc
                                                         else "the paper's FID order is reversed."))
    if all(a in arms and "inception_fid" in arms[a] for a in pairs.values()):
        (d_is, c_is), (d_fid, c_fid) = ([np.mean(arms[pairs[m]][k]) for m in ("DUIIT", "CycleGAN")]
                                        for k in ("inception_score", "inception_fid"))
        kind = arms[pairs["DUIIT"]].get("inception_kind", ["?"])[0]
        sentence += (f" With {kind} weights DUIIT's IS is {'higher' if d_is > c_is else 'lower'} ({d_is:.2f} vs "
                     f"{c_is:.2f}) and its FID {'higher' if d_fid > c_fid else 'lower'} ({d_fid:.1f} vs {c_fid:.1f}): "
                     + ("the paper's IS order holds" if d_is > c_is else "the paper's IS order is reversed") + ", "
                     + ("and its FID order holds." if d_fid > c_fid else "and its FID order is reversed."))
    if not any("inception_fid" in arms.get(a, {}) for a in pairs.values()):
        sentence += (" Inception IS/FID need the Inception weights as a local file (`fid_weights`); this run had "
                     "none, so only the domain FID (in the CT reader's feature space, not comparable in value "
                     "with Inception FIDs) is shown.")
    return lines + ["", sentence]


def table6_7(arms: dict) -> list[str]:
    from .metrics import paired_tests
    methods = {"PURE-CT": "PURE-CT", "TL": "TL-CT-{src}", "MTL": "MTL-CT-{src}", "DA": "DANN-CT-{src}",
               "CycleGAN": "CYCLEGAN-CT-{src}", **AUGMENT_ARMS}
    lines = [f"### Tables 6–7 analogue: paired t-test of DUIIT against every method (threshold {SIGNIFICANCE})", ""]
    header = ["DUIIT", "", *methods]
    rows, sentences = [], []
    for number, src in ((6, "MRI"), (7, "PET")):
        duiit = f"MIX-CT-{src}"
        ours, significant, tested = [], [], []
        for name, pattern in methods.items():
            arm = pattern.format(src=src)
            if duiit not in arms or arm not in arms:
                ours.append("not run")
                continue
            t = paired_tests(arms[duiit]["test_mse"], arms[arm]["test_mse"])
            better = t["mean_difference"] < 0
            tested.append(name)
            if better and t["t_p"] < SIGNIFICANCE:
                significant.append(name)
            p = "–" if math.isnan(t["t_p"]) else f"{t['t_p']:.3f}"
            ours.append(f"{p} ({'lower' if better else 'higher'})")
        rows.append([f"{duiit} (Table {number})", "ours: p (DUIIT's MSE)", *ours])
        rows.append(["", "paper: p", *(f"{PAPER_TABLE6_7[src][m]:.3f}" for m in methods)])
        if tested:
            sentences.append(f"Table {number}: the paper's DUIIT ({src} → CT) differs from all 8 methods at p < "
                             f"{SIGNIFICANCE}; ours is lower with p < {SIGNIFICANCE} against {len(significant)} of "
                             f"{len(tested)} run ({', '.join(significant) or 'none'}).")
    return lines + _table(header, rows) + ["", " ".join(sentences) or "DUIIT and the other methods were not run."]


def paper_tables(arms: dict) -> list[str]:
    """Markdown lines of all analogues; the run's cohorts play the paper's random splits."""
    intro = ["## The paper's tables, side by side", "",
             "Mean ± std over cohorts (the paper: over 10 random splits of its archive). The phantom's "
             "errors are of another population, so compare orders and significance, not values."]
    out = intro
    for render in (table2, table3, table4, table5, table6_7):
        out += [""] + render(arms)
    return out
