"""`duiit experiment`: the protocol that settles whether DUIIT helps, on the embedded phantom.

Every arm trains the same predictor with the same budget (steps, real-CT batch, model) on the same
cohorts: cohort c uses phantom seed c, split seed c and training seed c in every arm, so arms are
compared pair by pair. Per cohort one job trains the CT readers and the translator warm-up, which
the translator arms (CycleGAN two-stage, DUIIT) share; then one process per arm × cohort. A cell
that finished (its result.json exists) is skipped on a rerun, so an interrupted experiment resumes.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .arms import ALL_ARMS, DEFAULT_ARMS, VARIANT_SEPARATOR
from .config import FastConfig, PhantomConfig, TrainConfig, leaf_fields
from .errors import DuiitConfigError
from .eval.experiment_report import MAX_COHORT_ID, cohort_dir_of, cohort_list, collect_results, write_report
from .io import folder_lock, write_json
from .train.methods import method_of

GRID_SLICES = 6


def experiment_config(quick: bool = False) -> TrainConfig:
    """The calibrated CPU-sized experiment (see docs/experiment.md for what was tried). 64² keeps
    the ventricles and sulci resolvable; λ = 1e-3 on L_pred summed in years² is the paper's weight;
    the translator warms up before the predictor sees its output. 24 epochs (decay from 12): at 8 the
    DUIIT cells chose their last epoch and every arm's validation MSE improved with 16 (PURE-CT
    61.2 → 50.5, DUIIT 69.6 → 54.0 years²); at 16 DUIIT's validation MSE was still falling in its last
    epochs, and with 24 its 2-seed validation MSE fell 61.4 → 55.9 (lower on 4 of 5 cohorts, the
    fifth equal). A 500-step warm-up (was 1000) kept 5 cohorts under an hour on 2 cores (49.9 min
    measured) and was not worse on validation (DUIIT 50.6 vs 54.0).
    18 validation patients (was 6): with 6, one cell's validation MSE had a bootstrap sd over
    patients of 17–71 years², so the best epoch and every choice made on validation were mostly
    noise. The training patients stay the same people (the phantom draws patients in order).
    predictor_source_weight = 0.5 (beyond the paper): DUIIT's P learns from real CT + half-weighted
    translations while G's discriminative gradient stays eq. 2's; over 5 cohorts × 5 training seeds
    its cross-fitted validation MSE was lower on 4 of 5 cohorts (66.5 vs 67.7 years², a small effect).
    predictor_bn_stats = by_setting: each arm's P is evaluated with the BatchNorm statistic its own
    cross-fitted validation chose (arms.BN_STATS_BY_SETTING): real-CT statistics handicapped the arms
    whose P trains on CT mixed with images unlike CT (NAIVE 80.7 → 69.9, ORACLE 52.8 → 41.4 years²).
    200 test patients per cohort (was 30; only test patients are added, so the trainings are the same):
    on 30 a cohort's test MSE was largely the luck of its patients: the record's trainings scored 6–17
    years² higher on 170 added patients, arm by arm, and DUIIT's worst cohort on the 30 was its second
    best on the 200 (`duiit experiment --from RUN --test-patients 200`, docs/experiment.md)."""
    phantom = PhantomConfig(ct_train_patients=12, ct_val_patients=18, ct_test_patients=200,
                            source_patients=50, slices_per_patient=20, ct_size=96, mri_size=64,
                            pet_size=32, seed=0)
    cfg = TrainConfig(setting="MIX-CT-MRI", image_size=64, ngf=16, ndf=16, n_blocks=3, predictor="small",
                      batch_size=4, predictor_batch_size=4, epochs=24, decay_start_epoch=12, steps_per_epoch=50,
                      translator_warmup_steps=500, reader_steps=400, phantom=phantom, num_threads=1,
                      predictor_source_weight=0.5, predictor_bn_stats="by_setting", label_cues=True,
                      pictures=False,   # the experiment draws its own figures over cells
                      # The recorded run (docs/experiment.md) used torch's foreach Adam; fused Adam
                      # rounds differently, and a GAN turns rounding into another trajectory.
                      fast=FastConfig(fused_optimizer=False))
    if quick:
        cfg.phantom = dataclasses.replace(phantom, ct_test_patients=6, source_patients=8, slices_per_patient=6,
                                          ct_val_patients=3)
        cfg.image_size, cfg.epochs, cfg.decay_start_epoch, cfg.steps_per_epoch = 32, 2, 1, 4
        cfg.translator_warmup_steps, cfg.reader_steps, cfg.ngf, cfg.ndf, cfg.n_blocks = 6, 10, 4, 4, 1
    return cfg


def expand_arms(arms) -> list[str]:
    """The arms in order, each once; "all" stands for ALL_ARMS."""
    return list(dict.fromkeys(a for arm in arms for a in (ALL_ARMS if arm == "all" else (arm,))))


def parse_arm(arm: str) -> tuple[str, dict]:
    """'SETTING' or 'SETTING@pred_feedback' → (setting, config overrides)."""
    setting, _, variant = arm.partition(VARIANT_SEPARATOR)
    overrides = {"setting": setting}
    if variant:
        overrides["pred_feedback"] = variant
    try:
        TrainConfig(**overrides).validate()
    except DuiitConfigError as exc:
        raise DuiitConfigError(f"arm {arm!r}: {exc}") from None
    return setting, overrides


def warmup_tag(sources) -> str:
    """The per-cohort files a source set's translator arms share: '' for MRI (the recorded runs'
    names: warmup/, readers.pt, prepared), '-pet', '-mri-pet'."""
    return "" if tuple(sources) == ("mri",) else "-" + "-".join(sources)


PHANTOM_CACHE = ".phantom-cache"   # rendered once per cohort, read by its other jobs; removed at the end


SEED_STRIDE = MAX_COHORT_ID + 1   # training seed s of cohort c is c + 1000·s: the same patients, another training


def cohort_config(base: TrainConfig, cohort: int, out_dir: Path, seed_index: int = 0,
                  cache_dir: str | None = None) -> TrainConfig:
    """Cohort c's seeds: its phantom patients and split (seed c), and its training seed (c for the
    first training, c + 1000·s for training s: other initial weights, batch order and image pools
    on the same patients). Without a cache_dir of the user's, the jobs share the experiment
    folder's phantom cache (by default next to out_dir): each cohort is rendered once instead of
    once per job (~15 s each on 2 cores)."""
    cache_dir = base.cache_dir or cache_dir or str(Path(out_dir).parent / PHANTOM_CACHE)
    return dataclasses.replace(base, seed=cohort + SEED_STRIDE * seed_index, split_seed=cohort, out_dir=str(out_dir),
                               cache_dir=cache_dir, phantom=dataclasses.replace(base.phantom, seed=cohort))


# -- the jobs (each runs in its own process) ---------------------------------------------------

def run_prepare_job(cfg: TrainConfig, cohort_dir: Path, feedback_reader: bool) -> None:
    """CT readers (label cues: real CT + source patients as CT; feedback, where an arm uses
    pred_feedback = ct_reader: real CT only) and the translator warm-up, shared by the translator
    arms of this cohort."""
    from .train.checkpoint import read_checkpoint, save_readers
    from .train.trainer import Trainer
    sources = TrainConfig(setting=cfg.setting).sources
    tag = warmup_tag(sources)
    cfg = dataclasses.replace(cfg, setting="MIX-CT-" + "-".join(m.upper() for m in sources),
                              pred_feedback="ct_reader" if feedback_reader else "joint",
                              label_cues=True, out_dir=str(cohort_dir / f"warmup{tag}"))
    trainer = Trainer(cfg, progress=False)
    warm = Path(cfg.out_dir) / "checkpoint.pt"
    if warm.exists():   # a killed warm-up continues
        trainer.restore(read_checkpoint(warm))
    trainer.prepare()
    save_readers(trainer.readers, cohort_dir / f"readers{tag}.pt")
    trainer.warm_up(Path(cfg.out_dir) / "checkpoint.pt")


def run_arm_job(cfg: TrainConfig, cell_dir: Path, cohort_dir: Path) -> dict:
    from .eval.evaluate import cross_fitted_val_mse
    from .train.checkpoint import CHECKPOINT_NAME
    from .train.trainer import Trainer
    method = method_of(cfg.kind)
    translators = bool(method.translator_sources(cfg))
    if translators:   # the cohort's shared warm-up and readers, where this arm uses them
        tag = warmup_tag(cfg.sources)
        warm = cohort_dir / f"warmup{tag}" / CHECKPOINT_NAME
        cfg = dataclasses.replace(cfg, translator_init=str(warm) if warm.is_file() else None,
                                  reader_path=str(cohort_dir / f"readers{tag}.pt") if method.uses_readers(cfg) else None)
    start = time.perf_counter()
    trainer = Trainer(cfg, progress=False)
    trainer.fit(resume=(cell_dir / CHECKPOINT_NAME).exists())   # a killed cell continues
    result = {"setting": cfg.setting, "pred_feedback": cfg.pred_feedback,
              "test": trainer.evaluate("test"), "val": trainer.evaluate("val"),
              "selected_epoch": trainer.best["epoch"] if trainer.best else None,
              "val_crossfit_mse": cross_fitted_val_mse(trainer.history),
              "history": trainer.history, "seconds": round(time.perf_counter() - start, 1)}
    if translators:
        if "cues" in trainer.readers:   # label_cues on (the experiment's default)
            result["label_cues"] = trainer.label_cues()   # the final translator (CycleGAN's is frozen)
        if cfg.fid_weights:
            result.setdefault("label_cues", {}).update(trainer.image_quality())
        _save_grid(trainer, cell_dir / "grid.npz")
    write_json(cell_dir / "result.json", result)
    return result


def _save_grid(trainer, path: Path) -> None:
    import numpy as np
    from .io import atomic_path
    source = trainer.cfg.sources[0]
    src = trainer.data.sources[source]
    as_ct = trainer.data.sources_as_ct.get(source)
    pids = src.patients
    picks = [pids[i] for i in np.linspace(0, len(pids) - 1, min(GRID_SLICES, len(pids))).astype(int)]
    rows = [np.nonzero(src.patient_ids == p)[0] for p in picks]
    idx = [int(r[len(r) // 2]) for r in rows]   # each picked patient's middle slice
    arrays = {"source": src.images[idx, 0].numpy(), "translated": trainer.translate(src.images[idx], source)[:, 0].numpy(),
              "ages": src.ages[idx].numpy()}
    if as_ct is not None:
        arrays["true_ct"] = as_ct.images[idx, 0].numpy()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def _job_main(spec_path: str) -> int:
    """Entry point of one job process: python -m duiit_fast.experiment SPEC.json."""
    spec = json.loads(Path(spec_path).read_text())
    cfg = TrainConfig.from_dict(spec["config"])
    cohort_dir = Path(spec["cohort_dir"])
    if spec["kind"] == "prepare":
        run_prepare_job(cfg, cohort_dir, spec["feedback_reader"])
        (cohort_dir / f"prepared{warmup_tag(cfg.sources)}").write_text("ok\n")
    else:
        run_arm_job(cfg, Path(spec["cell_dir"]), cohort_dir)
    return 0


# -- the scheduler ------------------------------------------------------------------------------

@dataclasses.dataclass
class Job:
    name: str
    spec: dict
    done_file: Path
    needs: tuple = ()

    @property
    def done(self) -> bool:
        return self.done_file.is_file()


def plan_jobs(base: TrainConfig, out: Path, cohorts: int, arms, seeds: int = 1) -> list[Job]:
    """Per cohort and training seed: one prepare job per source set of the translator arms (MRI,
    PET, MRI + PET), then one job per arm; a translator arm waits for its source set's prepare job."""
    return [job for c in cohort_list(cohorts) for s in range(seeds) for job in _cohort_jobs(base, out, c, s, arms)]


def _cohort_jobs(base: TrainConfig, out: Path, c: int, seed_index: int, arms) -> list[Job]:
    cohort_dir = cohort_dir_of(out, c, seed_index)
    cfg = cohort_config(base, c, cohort_dir, seed_index, cache_dir=str(out / PHANTOM_CACHE))
    label = f"cohort {c}" + (f", seed {seed_index}" if seed_index else "")
    by_sources: dict[tuple, list[str]] = {}   # the translator arms by their sources
    for a in arms:
        arm_setting = TrainConfig(setting=parse_arm(a)[0])
        sources = method_of(arm_setting.kind).translator_sources(arm_setting)
        if sources:
            by_sources.setdefault(sources, []).append(a)
    jobs, preps = [], {}
    for sources, translator_arms in by_sources.items():
        tag = warmup_tag(sources)
        setting = "MIX-CT-" + "-".join(m.upper() for m in sources)
        preps[sources] = Job(f"{label}: readers + translator warm-up{tag.replace('-', ' ')}",
                             {"kind": "prepare", "config": dataclasses.replace(cfg, setting=setting).to_dict(),
                              "cohort_dir": str(cohort_dir),
                              "feedback_reader": any(parse_arm(a)[1].get("pred_feedback") == "ct_reader"
                                                     for a in translator_arms)},
                             cohort_dir / f"prepared{tag}")
        jobs.append(preps[sources])
    for arm in arms:
        setting, overrides = parse_arm(arm)
        cell_dir = cohort_dir / arm
        arm_cfg = dataclasses.replace(cfg, **overrides, out_dir=str(cell_dir))
        prep = next((preps[s] for s, translator_arms in by_sources.items() if arm in translator_arms), None)
        jobs.append(Job(f"{label}: {arm}", {"kind": "arm", "config": arm_cfg.to_dict(),
                                            "cohort_dir": str(cohort_dir), "cell_dir": str(cell_dir)},
                        cell_dir / "result.json", (prep.name,) if prep else ()))
    return jobs


def run_jobs(jobs: list[Job], workers: int, log=print, threads_per_job: int = 1) -> None:
    """Run pending jobs, `workers` processes at a time, each once its dependencies are done."""
    pending = [j for j in jobs if not j.done]
    finished = {j.name for j in jobs if j.done}
    total, skipped = len(jobs), len(jobs) - len(pending)
    if skipped:
        log(f"{skipped} of {total} jobs already done (resuming)")
    running: dict = {}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_job)}
    while pending or running:
        ready = [j for j in pending if all(n in finished for n in j.needs)]
        while ready and len(running) < workers:
            job = ready.pop(0)
            pending.remove(job)
            job.done_file.parent.mkdir(parents=True, exist_ok=True)
            spec_path = job.done_file.parent / f".{job.done_file.stem}-job.json"
            spec_path.write_text(json.dumps(job.spec))
            log_file = open(job.done_file.parent / f"{job.done_file.stem}.log", "w")
            proc = subprocess.Popen([sys.executable, "-m", "duiit_fast.experiment", str(spec_path)],
                                    stdout=log_file, stderr=subprocess.STDOUT, env=env)
            running[proc] = (job, time.perf_counter(), log_file)
        time.sleep(0.5)
        for proc in [p for p in running if p.poll() is not None]:
            job, t0, log_file = running.pop(proc)
            log_file.close()
            if proc.returncode != 0 or not job.done:
                for p in running:
                    p.kill()
                tail = Path(log_file.name).read_text().strip().splitlines()[-1:] or ["(no output)"]
                raise DuiitConfigError(f"experiment job '{job.name}' failed (exit {proc.returncode}): "
                                       f"{tail[0]} — see {log_file.name}")
            finished.add(job.name)
            log(f"[{len(finished)}/{total}] {job.name} done in {time.perf_counter() - t0:.0f} s"
                + _summary(job))


def _summary(job: Job) -> str:
    if job.spec["kind"] != "arm":
        return ""
    r = json.loads(job.done_file.read_text())
    return f": val MSE {r['val']['mse']:.1f}, test MSE {r['test']['mse']:.1f} years²"


def torch_version() -> str:
    import torch
    return torch.__version__


def fast_path_description(cfg: TrainConfig) -> str:
    from .train.fast import resolve_fast_path
    from .train.fast import resolve_device
    return resolve_fast_path(cfg, resolve_device(cfg.device)).describe()


def _check_same_protocol(path: Path, base: TrainConfig) -> None:
    """Finished cells are reused on a rerun only under the configuration that produced them. A
    field added to TrainConfig after the run was written counts as the same protocol when it holds
    its default (TrainConfig's or the experiment's), i.e. the behaviour before the field existed."""
    now = json.loads(json.dumps(base.to_dict()))
    if not path.is_file():
        write_json(path, {"config": now})
        return
    saved, now = leaf_fields(json.loads(path.read_text()).get("config", {})), leaf_fields(now)
    if not _same_protocol(saved, now):
        raise DuiitConfigError(f"{path.parent} holds an experiment run with another configuration; "
                               f"use a new --out folder{_only_test_set_differs(saved, now)}")


def _same_protocol(saved: dict, now: dict) -> bool:
    defaults = [leaf_fields(json.loads(json.dumps(c.to_dict()))) for c in (TrainConfig(), experiment_config())]
    return all(k in now and now[k] == v for k, v in saved.items()) and all(
        any(now[k] == d.get(k) for d in defaults) for k in now if k not in saved)


def _only_test_set_differs(saved: dict, now: dict) -> str:
    """A hint when a folder differs only in its test set's size (the 30 test patients of runs before
    2026-12-05): its trainings are today's, and can be re-read on the larger test set."""
    old_test, new_test = saved.get("phantom.ct_test_patients"), now["phantom.ct_test_patients"]
    if old_test == new_test or not _same_protocol({**saved, "phantom.ct_test_patients": new_test}, now):
        return ""
    return (f" (its trainings are today's but were tested on {old_test} patients per cohort, not {new_test}: "
            f"`duiit experiment --out VIEW --from RUN --test-patients {new_test}` re-reads them)")


def run_experiment(out_dir, cohorts=5, arms=DEFAULT_ARMS, workers: int | None = None,
                   quick: bool = False, log=print, base: TrainConfig | None = None, seeds: int = 1) -> dict:
    """Run (or resume) every arm × cohort (× training seed) and write results.json and report.md.
    cohorts: N runs cohorts 0 … N−1; a list of ids runs those (fresh cohorts: e.g. range(100, 140)).
    `base` replaces experiment_config(quick) as the configuration every arm starts from. With
    seeds = K each cell is trained K times on the same patients and its metrics are the means over
    the K trainings: the paired tests then compare cohorts, not single trajectories."""
    if isinstance(cohorts, int) and cohorts < 1:
        raise DuiitConfigError(f"--cohorts must be at least 1, got {cohorts}")
    cohorts = cohort_list(cohorts)
    if not cohorts or cohorts[0] < 0 or cohorts[-1] > MAX_COHORT_ID:
        raise DuiitConfigError(f"--cohorts: cohort ids must lie in 0–{MAX_COHORT_ID}")
    if seeds < 1:
        raise DuiitConfigError(f"--seeds must be at least 1, got {seeds}")
    if workers is not None and workers < 1:
        raise DuiitConfigError(f"--workers must be at least 1, got {workers}")
    arms = expand_arms(arms)
    for arm in arms:
        parse_arm(arm)
    out = Path(out_dir)
    base = (base or experiment_config(quick)).validate()
    workers = workers or max(1, min(os.cpu_count() or 1, 2))
    with folder_lock(out / ".experiment.lock", "another duiit experiment is running in this folder"):
        _check_same_protocol(out / "experiment.json", base)
        return _run_locked(out, cohorts, arms, workers, log, base, seeds)


def _run_locked(out: Path, cohorts: list, arms, workers: int, log, base: TrainConfig, seeds: int) -> dict:
    start = time.perf_counter()
    run_jobs(plan_jobs(base, out, cohorts, arms, seeds), workers, log)
    if base.cache_dir is None:   # every job is done: the rendered volumes are not needed any more
        shutil.rmtree(out / PHANTOM_CACHE, ignore_errors=True)
    results = collect_results(out, cohorts, arms, base, seeds)
    results["wall_seconds_this_invocation"] = round(time.perf_counter() - start, 1)
    results["workers"] = workers
    results["date"] = time.strftime("%Y-%m-%d")
    from .train.fast import cpu_features
    results["machine"] = f"{platform.machine()} ({cpu_features()}), {os.cpu_count()} cores, torch {torch_version()}"
    results["fast_path"] = fast_path_description(base)   # "auto" differs by machine: say what it was
    write_json(out / "results.json", results)
    write_report(out, results, log)
    return results


if __name__ == "__main__":
    sys.exit(_job_main(sys.argv[1]))
