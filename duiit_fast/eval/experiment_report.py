"""results.json and report.md of `duiit experiment`: mean ± std over cohorts, the share of the
PURE → ORACLE gap each arm closes, paired tests, a bar plot and translation grids."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from ..arms import REFERENCE_ARM, is_duiit, oracle_arm
from ..io import write_text
from .metrics import paired_tests   # noqa: F401  (re-exported: the report's tests)



def _wilcoxon_floor(n: int) -> str:
    """What the exact two-sided Wilcoxon test can show with n paired cohorts: its smallest p is
    2 / 2**n (an arm better on every cohort)."""
    floor = 2 / 2 ** n
    if floor >= 0.1:
        return f"With {n} cohorts the two-sided Wilcoxon p cannot go below {floor:.3g}: the paper's 0.1 is out of reach."
    if n == 5:
        return ("With 5 cohorts the smallest two-sided Wilcoxon p is 0.0625: below the paper's 0.1 threshold only "
                "when an arm wins on every cohort.")
    return f"With {n} cohorts the smallest two-sided Wilcoxon p is {floor:.3g} (an arm better on every cohort)."


def setting_of(arm: str) -> str:
    """The setting an arm runs ('MIX-CT-MRI@ct_reader' → 'MIX-CT-MRI')."""
    return arm.partition("@")[0]


def source_of(arm: str) -> str:
    """'MRI', 'PET' or 'MRI-PET': the source set an arm draws on (MRI for CT-only arms)."""
    return setting_of(arm).split("-CT-")[-1] if "-CT-" in arm else "MRI"


def references_for(arm: str) -> tuple:
    """The arms an arm is tested against: PURE-CT and the NAIVE / two-stage CycleGAN of its source."""
    src = source_of(arm)
    return ("PURE-CT", f"NAIVE-CT-{src}", f"CYCLEGAN-CT-{src}")


def cohort_dir_of(out: Path, cohort: int, seed_index: int = 0) -> Path:
    """Where a cohort's cells for one training seed live: cohort-c/ for the first (the layout of runs
    with one seed, so they extend to more), cohort-c/seed-s/ for the others."""
    cohort_dir = Path(out) / f"cohort-{cohort}"
    return cohort_dir if seed_index == 0 else cohort_dir / f"seed-{seed_index}"


def _read_cell(out: Path, cohort: int, seeds: int, arm: str) -> dict:
    """One cohort's cell; with several training seeds their mean in every number the report uses,
    and the per-seed MSEs beside them."""
    runs = [json.loads((cohort_dir_of(out, cohort, s) / arm / "result.json").read_text()) for s in range(seeds)]
    if seeds == 1:
        return runs[0]

    def mean(values):
        return None if any(v is None for v in values) else float(np.mean(values))
    cell = {split: {k: mean([r[split].get(k) for r in runs]) for k in runs[0][split]
                    if isinstance(runs[0][split][k], (int, float))} for split in ("test", "val")}
    cell["selected_epoch"] = mean([r["selected_epoch"] for r in runs])
    cell["val_crossfit_mse"] = mean([r.get("val_crossfit_mse") for r in runs])
    cell["seconds"] = float(sum(r["seconds"] for r in runs))
    cell["history"] = [{"grad_share": mean([r["history"][-1].get("grad_share") for r in runs])}]
    if all("label_cues" in r for r in runs):
        cell["label_cues"] = {k: mean([r["label_cues"].get(k) for r in runs]) for k in runs[0]["label_cues"]}
    cell["per_seed"] = {"test_mse": [r["test"]["mse"] for r in runs], "val_mse": [r["val"]["mse"] for r in runs]}
    return cell


# Cohort ids stay below experiment.SEED_STRIDE (1000): training seed s of cohort c is c + 1000·s, so a
# larger id would train on another cohort's second seed.
MAX_COHORT_ID = 999


def cohort_list(cohorts) -> list[int]:
    """Cohort ids: N stands for the first N (0 … N−1), a list names them."""
    return list(range(cohorts)) if isinstance(cohorts, int) else sorted(set(int(c) for c in cohorts))


def collect_results(out: Path, cohorts, arms, base_cfg, seeds: int = 1) -> dict:
    """cohorts: N (the first N) or the list of cohort ids."""
    cohorts = cohort_list(cohorts)
    arms_out = {}
    for arm in arms:
        cells = [_read_cell(out, c, seeds, arm) for c in cohorts]
        entry = {"test_mse": [r["test"]["mse"] for r in cells], "val_mse": [r["val"]["mse"] for r in cells],
                 "test_patient_mse": [r["test"]["patient_mse"] for r in cells],
                 "selected_epoch": [r["selected_epoch"] for r in cells],
                 "seconds": [r["seconds"] for r in cells],
                 "bn_stats": dataclasses.replace(base_cfg, setting=setting_of(arm)).bn_stats}
        if all("label_cues" in r for r in cells):
            for key in cells[0]["label_cues"]:
                if all(key in r["label_cues"] for r in cells):   # cells of an older version lack newer metrics
                    entry[key] = [r["label_cues"][key] for r in cells]
        for part in ("slope", "bias", "scatter"):   # error_parts; cells of an older version lack them
            values = [r["test"].get(part) for r in cells]
            if all(v is not None for v in values):
                entry[f"test_{part}"] = values
        crossfit = [r.get("val_crossfit_mse") for r in cells]   # cells of an older version lack it
        if all(v is not None for v in crossfit):
            entry["val_mse_crossfit"] = crossfit
        shares = [r["history"][-1].get("grad_share") for r in cells]
        if all(s is not None for s in shares):
            entry["grad_share_last_epoch"] = shares
        if seeds > 1:
            entry["test_mse_per_seed"] = [r["per_seed"]["test_mse"] for r in cells]
            entry["val_mse_per_seed"] = [r["per_seed"]["val_mse"] for r in cells]
        arms_out[arm] = entry
    results = {"cohorts": cohorts, "seeds": seeds, "arms": arms_out, "config": base_cfg.to_dict()}
    results["comparison"] = compare(arms_out)
    results["verdict"] = verdict(arms_out, results["comparison"], len(cohorts))
    return results


GAP_INTERVAL = (5.0, 95.0)   # percentiles of the bootstrap: a 90 % interval


def gap_closed_interval(pure, oracle, arm, draws: int = 4000, seed: int = 0):
    """Percentile bootstrap interval of the gap share (PURE − arm) / (PURE − ORACLE) on cohort means.
    Each argument holds, per cohort, the test MSE of each training seed (shape cohorts × seeds). Every
    draw takes the cohorts with replacement and, within each, its seeds with replacement — the same
    draw for the three arms, which keeps their pairing — so the interval shows both how much the
    phantom's patients and how much the training seed move the share. None below 2 cohorts."""
    cells = np.stack([np.asarray(x, float).reshape(len(x), -1) for x in (pure, oracle, arm)])   # 3 × n × k
    _, n, k = cells.shape
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    cohorts = rng.integers(0, n, size=(draws, n))
    seeds = rng.integers(0, k, size=(draws, n, k))
    drawn = cells[:, cohorts[:, :, None], seeds].mean(axis=(2, 3))   # 3 × draws: each arm's mean per draw
    p, o, m = drawn
    shares = (p - m)[p > o] / (p - o)[p > o]   # a draw where ORACLE does not beat PURE has no gap
    if len(shares) < draws // 2:
        return None
    low, high = np.percentile(shares, GAP_INTERVAL)
    return [float(low), float(high)]


def compare(arms: dict) -> dict:
    """Per arm: gap closed (on cohort means and per cohort, with its bootstrap interval) and paired
    tests against the references."""
    out = {}
    pure = arms.get(REFERENCE_ARM, {})
    for arm, entry in arms.items():
        row = {}
        oracle = arms.get(oracle_arm(source_of(arm)), {})   # the gap of the arm's source
        if pure.get("test_mse") and oracle.get("test_mse"):
            p, o, m = np.mean(pure["test_mse"]), np.mean(oracle["test_mse"]), np.mean(entry["test_mse"])
            row["gap_closed"] = float((p - m) / (p - o)) if p > o else float("nan")
            row["gap_closed_per_cohort"] = [float((pc - mc) / (pc - oc)) if pc > oc else float("nan")
                                            for pc, oc, mc in zip(pure["test_mse"], oracle["test_mse"],
                                                                  entry["test_mse"])]
            if entry is not pure and entry is not oracle:   # theirs are 0 and 1 by definition
                per_seed = [e.get("test_mse_per_seed") or e["test_mse"] for e in (pure, oracle, entry)]
                row["gap_closed_interval"] = gap_closed_interval(*per_seed)
        for ref in references_for(arm):
            if ref in arms and ref != arm:
                row[f"vs {ref}"] = paired_tests(entry["test_mse"], arms[ref]["test_mse"])
        out[arm] = row
    return out


BN_STATS_WORDS = {"real_ct": "re-estimated on the real training CT",
                  "training_mix": "re-estimated on real CT mixed 1:1 with each group its training batches held",
                  "running": "the momentum averages of its training batches"}


def _bn_stats_text(arms: dict) -> str:
    """Which BatchNorm statistics each arm's P was evaluated with (results of older versions: real CT)."""
    by_stat: dict = {}
    for arm, e in arms.items():
        by_stat.setdefault(e.get("bn_stats", "real_ct"), []).append(arm)
    return "P's BatchNorm statistics at evaluation: " + "; ".join(
        f"{BN_STATS_WORDS[stat]} ({', '.join(names)})" for stat, names in by_stat.items()) + "."


def _fmt(values, digits: int = 1) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.{digits}f}"


def _gap_text(row: dict) -> str:
    """'34% (90% interval 5 to 60%)', '34%' without an interval, '–' without a gap."""
    gap, interval = row.get("gap_closed", float("nan")), row.get("gap_closed_interval")
    if math.isnan(gap):
        return "–"
    return f"{100 * gap:.0f}%" + (f" (90% interval {100 * interval[0]:.0f} to {100 * interval[1]:.0f}%)" if interval else "")


def _p(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def unit_of(results: dict) -> str:
    """What the paired units are: phantom cohorts, or splits of the user's own folders."""
    return "split" if results.get("config", {}).get("ct") else "cohort"


def write_report(out: Path, results: dict, log=print) -> None:
    arms, comp = results["arms"], results["comparison"]
    bar_plot(arms, out / "test_mse.png")
    grids = translation_grids(out, results)
    cfg = results["config"]
    n, seeds = len(results["cohorts"]), results.get("seeds", 1)
    seeds_text = (f"Each cell trained with {seeds} training seeds on the same patients (c, c + 1000, …): every "
                  "number is the mean over them, and the tests pair cohorts. " if seeds > 1 else "")
    own = unit_of(results) == "split"
    lines = [f"# duiit experiment: {n} {unit_of(results)}(s)", "",
             (f"Your data ({cfg['ct']} and the sources beside it): patient-level splits {results['cohorts']} (split "
              "seed = training seed = split; each split's CT test patients are every arm's). " if own else
              f"Phantom cohorts {results['cohorts']} (phantom seed = split seed = training seed = cohort). ")
             + seeds_text +
             f"Every arm: predictor `{cfg['predictor']}`, {cfg['epochs']} epochs × {cfg['steps_per_epoch']} steps, "
             f"real-CT batch {cfg['batch_size']}, images {cfg['image_size']}²; the predictor of the epoch with the "
             f"best validation MSE is kept. Translator arms: ngf {cfg['ngf']}, {cfg['n_blocks']} blocks, "
             + f"{cfg['translator_warmup_steps']} warm-up steps (shared)"
             + f", λ = {cfg['lambda_pred']} on L_pred summed in years², λcyc = {cfg['lambda_cyc']}."
             + (f" Ran on {results['machine']}: {results['fast_path']} (another CPU rounds differently, and"
                " the trajectories of the GAN arms follow)." if "fast_path" in results else ""), "",
             _bn_stats_text(arms), "",
             "| arm | test MSE (years²) | val MSE | gap closed | label-cue slope | reader MSE on G(src) | pixel L1 "
             "| domain FID |", "|---|---|---|---|---|---|---|---|"]
    for arm, e in arms.items():
        lines.append(f"| {arm} | {_fmt(e['test_mse'])} | {_fmt(e['val_mse'])} | {_gap_text(comp[arm])} | "
                     f"{_fmt(e['reader_slope'], 2) if 'reader_slope' in e else '–'} | "
                     f"{_fmt(e['reader_mse']) if 'reader_mse' in e else '–'} | "
                     f"{_fmt(e['pixel_l1'], 3) if 'pixel_l1' in e else '–'} | "
                     f"{_fmt(e['domain_fid'], 2) if 'domain_fid' in e else '–'} |")
    crossfit = {a: e for a, e in arms.items() if "val_mse_crossfit" in e}
    if crossfit:
        lines += ["", "Validation MSE of the chosen epoch, and cross-fitted (the epoch chosen on half the validation "
                  "patients, scored on the other half, both ways): the first is optimistic, the more so the noisier "
                  "the arm's validation curve; the second is not.", "",
                  "| arm | val MSE, best epoch | val MSE, cross-fitted |", "|---|---|---|"]
        lines += [f"| {a} | {_fmt(e['val_mse'])} | {_fmt(e['val_mse_crossfit'])} |" for a, e in crossfit.items()]
    lines += ["", "Per cohort test MSE" + (" (per training seed in brackets):" if seeds > 1 else ":"),
              "", "| arm | " + " | ".join(f"cohort {c}" for c in results["cohorts"]) + " |",
              "|---|" + "---|" * n]
    for arm, e in arms.items():
        per_seed = e.get("test_mse_per_seed") or [None] * len(e["test_mse"])
        lines.append(f"| {arm} | " + " | ".join(
            f"{v:.1f}" + (f" ({', '.join(f'{x:.1f}' for x in runs)})" if runs else "")
            for v, runs in zip(e["test_mse"], per_seed)) + " |")
    parts = {a: e for a, e in arms.items() if "test_scatter" in e}
    if parts:
        lines += ["", "Where the test error comes from (slice level; MSE = bias² + (1 − slope)²·var(age) + scatter²):",
                  "", "| arm | slope of prediction on age | bias (years) | scatter (sd, years) |", "|---|---|---|---|"]
        lines += [f"| {a} | {_fmt(e['test_slope'], 2)} | {_fmt(e['test_bias'])} | {_fmt(e['test_scatter'])} |"
                  for a, e in parts.items()]
    lines += ["", "Paired tests over cohorts (two-sided p; negative difference = lower MSE than the reference):", "",
              "| arm | vs | mean difference | cohorts better | t-test p | Wilcoxon p |", "|---|---|---|---|---|---|"]
    for arm, row in comp.items():
        for key, t in row.items():
            if key.startswith("vs "):
                lines.append(f"| {arm} | {key[3:]} | {t['mean_difference']:+.1f} | {t['wins']}/{n} | "
                             f"{_p(t['t_p'])} | {_p(t['wilcoxon_p'])} |")
    shares = {a: e["grad_share_last_epoch"] for a, e in arms.items() if "grad_share_last_epoch" in e}
    if shares:
        lines += ["", "Gradient share into G (last epoch): " + "; ".join(f"{a}: {_fmt(v)}" for a, v in shares.items())]
    lines += ["", verdict(arms, comp, n), "", _wilcoxon_floor(n), ""]
    if any(row.get("gap_closed_interval") for row in comp.values()):
        lines += ["Gap intervals: percentile bootstrap of the share on cohort means, cohorts drawn with replacement"
                  + (" and, within each, its training seeds" if seeds > 1 else "")
                  + " (the same draws for PURE-CT, ORACLE and the arm).", ""]
    lines += ["Label cues: a reader trained on real CT (and the MRI patients rendered as CT) reads G(MRI); a slope "
              "near 1 means the translation kept the anatomy that carries age, near 0 that it erased it. "
              "grad share: ‖∇_G λ·L_pred‖ / ‖∇_G L_trans‖ on the last epoch's first step. Domain FID: FID's "
              "Fréchet distance between G(MRI) and real CT in the CT reader's feature space (0 = "
              "indistinguishable to the reader; not comparable with Inception FIDs).", "",
              "Figures: `test_mse.png` (mean ± std over cohorts, dots per cohort)"
              + (", " + ", ".join(f"`{g}`" for g in grids) + " (source | G(source) | same patient as CT)" if grids else "")
              + "."]
    from .paper_tables import paper_tables
    from .recommendation import recommendation
    lines += [""] + paper_tables(arms) + ["", recommendation(results, unit_of(results))]
    write_text(out / "report.md", "\n".join(lines) + "\n")
    log("\n".join(lines[4:6 + len(arms)]))
    log(verdict(arms, comp, n))
    log(recommendation(results, unit_of(results)).split("\n", 2)[-1])
    log(f"wrote {out / 'results.json'}, {out / 'report.md'}, {out / 'test_mse.png'}")


def verdict(arms: dict, comp: dict, n: int) -> str:
    duiit = [a for a in arms if is_duiit(a)]
    if not duiit or REFERENCE_ARM not in arms:
        return "No DUIIT arm or no PURE-CT arm: no verdict."
    parts = []
    for arm in duiit:
        row = comp[arm]
        gap = row.get("gap_closed", float("nan"))
        refs = references_for(arm)
        beats = [ref for ref in refs if f"vs {ref}" in row and row[f"vs {ref}"]["mean_difference"] < 0
                 and row[f"vs {ref}"]["t_p"] < 0.1]
        missing = [ref for ref in refs if f"vs {ref}" in row and ref not in beats]
        gap_text = "n/a" if math.isnan(gap) else _gap_text(row)
        goal = not missing and not math.isnan(gap) and gap >= 0.5
        parts.append(f"**{arm}** closes {gap_text} of the PURE→ORACLE gap; it beats "
                     f"{', '.join(beats) or 'none of the references'} with paired t-test p < 0.1"
                     + (f", not {', '.join(missing)}" if missing else "")
                     + (" — the goal (≥ 50 % of the gap, p < 0.1 against all three) is met." if goal
                        else " — the goal (≥ 50 % of the gap, p < 0.1 against all three) is not met."))
    return f"Verdict over {n} cohort(s): " + " ".join(parts)


def bar_plot(arms: dict, path) -> None:
    from .plots import plt, _save
    names = list(arms)
    means = [np.mean(arms[a]["test_mse"]) for a in names]
    stds = [np.std(arms[a]["test_mse"], ddof=1) if len(arms[a]["test_mse"]) > 1 else 0 for a in names]
    fig, ax = plt.subplots(figsize=(1.5 * len(names) + 2, 3.6))
    ax.bar(range(len(names)), means, yerr=stds, capsize=4, color="#8fb3d9")
    for i, a in enumerate(names):
        ax.plot([i] * len(arms[a]["test_mse"]), arms[a]["test_mse"], "k.", alpha=0.6)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("test MSE (years²)")
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def translation_grids(out: Path, results: dict) -> list[str]:
    """One PNG per translator arm, from cohort 0's saved examples."""
    from .plots import translation_grid
    written = []
    for arm in results["arms"]:
        grid = out / "cohort-0" / arm / "grid.npz"
        if not grid.is_file():
            continue
        with np.load(grid) as z:
            rows = [("source MRI", z["source"]), (f"G(MRI), {arm}", z["translated"])]
            if "true_ct" in z:
                rows.append(("same patient as CT", z["true_ct"]))
            captions = [f"age {a:.0f}" for a in z["ages"]]
        name = f"translations-{arm}.png"
        translation_grid(rows, captions, out / name)
        written.append(name)
    return written
