"""The verbs that train: demo, train (one run, a split protocol, or one rank of torchrun) and
experiment (every arm over phantom cohorts)."""
from __future__ import annotations

import sys
from pathlib import Path


def cmd_demo(args) -> int:
    from ..demo import run_demo
    run_demo(args.out, quick=args.quick, progress=not args.no_progress)
    return 0


def cmd_train(args) -> int:
    from ..config import TrainConfig
    from ..errors import DuiitConfigError
    from ..train.distributed import launched_by_torchrun
    if args.nproc < 1:
        raise DuiitConfigError(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc > 1 and args.splits is not None:
        raise DuiitConfigError("--splits runs its splits one after another: use it without --nproc")
    if args.resume and args.overwrite:
        raise DuiitConfigError("--resume continues the run in the folder and --overwrite replaces it: give one")
    if args.out is not None and args.out.strip() == "":
        raise DuiitConfigError("--out must name a folder, got an empty path")
    if args.nproc > 1 and not launched_by_torchrun():
        return _spawn_torchrun(args.nproc, args.argv)
    cfg = TrainConfig.from_toml(args.config)
    if args.out is not None:
        cfg.out_dir = args.out
    if args.on_bad_file:
        cfg.on_bad_file = args.on_bad_file
    cfg = cfg.with_settings(args.set or []) if args.set else cfg
    cfg.validate().check_schedule()   # --out, --on-bad-file and --set given here, against the data folders too
    if args.splits is not None:
        from ..train.protocol import run_splits
        summary = run_splits(cfg, args.splits, resume=args.resume, overwrite=args.overwrite,
                             progress=not args.no_progress)
        print(summary["table"])
        return 0
    if launched_by_torchrun():
        return _train_distributed(cfg, args)
    return _train_once(cfg, args)


def _spawn_torchrun(nproc: int, argv: list) -> int:
    """`duiit train --nproc N ...` = `torchrun --standalone --nproc_per_node N -m duiit_fast train ...`
    on this machine (multi-node: run torchrun yourself, README)."""
    import subprocess
    from ..errors import DuiitError
    rest, skip = [], False
    for a in argv:   # the same command line without --nproc (each rank is one process)
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            rest.append(a)
    code = subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            f"--nproc_per_node={nproc}", "-m", "duiit_fast", *rest])
    if code != 0:
        raise DuiitError(f"distributed training failed: a rank exited with status {code} (its error is above); "
                         "completed checkpoints are kept, continue with --resume")
    return 0


def _train_distributed(cfg, args) -> int:
    """One rank of a torchrun job: every rank trains its shard; rank 0 alone evaluates and writes."""
    from ..train.distributed import init_from_env, leaving_world
    world = init_from_env(cfg.device, args.timeout)
    with leaving_world():
        return _train_once(cfg, args, main=world.is_main)


def _train_once(cfg, args, main: bool = True) -> int:
    from ..io import write_json
    from ..train.trainer import Trainer
    trainer = Trainer(cfg, progress=main and not args.no_progress)
    try:
        trainer.fit(resume=args.resume, overwrite=args.overwrite)
    except KeyboardInterrupt:
        from ..train.checkpoint import RunFolder
        if main and args.overwrite and (Path(cfg.out_dir) / RunFolder.OVERWRITE_MARK).exists():
            print(f"duiit: interrupted before the new run's first checkpoint: {cfg.out_dir} still holds the run "
                  "it was replacing (marked overwrite-interrupted); run with --overwrite again to replace it",
                  file=sys.stderr)
            return 130
        raise
    if not main:
        return 0
    if args.resume and getattr(trainer, "restored_epoch", None) == trainer.epoch:   # nothing was left to train
        print(f"duiit: {cfg.out_dir} already holds a complete run ({trainer.epoch} of {cfg.epochs} epochs): nothing "
              f"was trained; to continue it, raise epochs (e.g. --set epochs={cfg.epochs * 2})", file=sys.stderr)
    metrics = {split: trainer.evaluate(split) for split in ("val", "test")}
    write_json(Path(cfg.out_dir) / "metrics.json", {"setting": cfg.setting, **metrics})
    print(f"{cfg.setting}: val MSE {metrics['val']['mse']:.2f}, test MSE {metrics['test']['mse']:.2f} "
          f"years² ({trainer.split_protocol} split); checkpoint and metrics.json in {cfg.out_dir}")
    return 0


def cmd_experiment(args) -> int:
    import dataclasses
    from ..arms import DEFAULT_ARMS
    from ..experiment import experiment_config, run_experiment
    if args.from_run or args.compose:
        return _experiment_view(args)
    if args.cohort_ids or args.test_patients:
        from ..errors import DuiitConfigError
        raise DuiitConfigError("--cohort-ids and --test-patients make a view of a finished experiment: give --from RUN")
    overrides = {k: getattr(args, k) for k in ("device", "fid_weights") if getattr(args, k) is not None}
    fast = {k: getattr(args, k) for k in ("precision", "compile") if getattr(args, k) is not None}
    if "fid_weights" in overrides:   # every cell is a process of its own: an absolute path
        overrides["fid_weights"] = str(Path(overrides["fid_weights"]).resolve())
    if args.config or args.splits is not None:
        return _experiment_on_folders(args, overrides, fast)
    base = experiment_config(args.quick)
    base = dataclasses.replace(base, fast=dataclasses.replace(base.fast, **fast), **overrides).with_settings(args.set or [])
    run_experiment(args.out, cohorts=args.cohorts, arms=args.arms or list(DEFAULT_ARMS), workers=args.workers,
                   base=base, seeds=args.seeds)
    return 0


def _experiment_on_folders(args, overrides: dict, fast: dict) -> int:
    """The experiment on the user's own folders: every arm over N patient-level splits (split seed =
    training seed = split), paired by split; ORACLE needs the phantom and is not offered."""
    import dataclasses
    from ..arms import VARIANT_SEPARATOR, setting_kind, setting_sources
    from ..config import TrainConfig
    from ..errors import DuiitConfigError
    from ..experiment import run_experiment
    if not args.config or args.splits is None:
        raise DuiitConfigError("the experiment on your own folders needs both --config FILE and --splits N")
    if args.splits < 2:
        raise DuiitConfigError(f"--splits must be at least 2 (the arms are compared over splits), got {args.splits}")
    if args.cohorts != 5 or args.quick:
        raise DuiitConfigError("--cohorts and --quick are for the phantom; with --config the units are --splits")
    cfg = TrainConfig.from_toml(args.config)
    if cfg.ct is None:
        raise DuiitConfigError(f"{args.config}: no ct folder: the phantom's experiment is `duiit experiment` "
                               "without --config")
    sources = setting_sources(cfg.setting)
    if not sources:
        raise DuiitConfigError(f"{args.config}: setting {cfg.setting} uses no source; name the source setting "
                               "(e.g. MIX-CT-MRI) so the arms know which folders to compare")
    src = "-".join(s.upper() for s in sources)
    arms = args.arms or ["PURE-CT", f"NAIVE-CT-{src}", f"CYCLEGAN-CT-{src}", f"MIX-CT-{src}"]
    bounds = [a for a in arms if setting_kind(a.partition(VARIANT_SEPARATOR)[0]) == "ORACLE"]
    if bounds:
        raise DuiitConfigError(f"{', '.join(bounds)}: ORACLE renders the source patients as CT, which only the "
                               "phantom can; leave it out on your own folders")
    base = dataclasses.replace(cfg, label_cues=True, pictures=False, fast=dataclasses.replace(cfg.fast, **fast),
                               **overrides).with_settings(args.set or [])
    run_experiment(args.out, cohorts=args.splits, arms=arms, workers=args.workers, base=base, seeds=args.seeds)
    return 0


def _experiment_view(args) -> int:
    """A view of finished experiments (experiment_views.py) instead of a run."""
    import json
    from .. import experiment_views as views
    from ..errors import DuiitConfigError
    from ..experiment import experiment_config
    if args.compose:
        view = views.compose([(source, arms) for source, *arms in args.compose], args.cohorts, args.seeds,
                             experiment_config(args.quick).with_settings(args.set or []))
    elif bool(args.cohort_ids) == bool(args.test_patients):
        raise DuiitConfigError("--from RUN needs one of --cohort-ids IDS (restate over cohorts) and "
                               "--test-patients N (re-read on more test patients)")
    elif args.cohort_ids:
        view = views.restate(json.loads((Path(args.from_run) / "results.json").read_text()),
                             views.parse_cohorts(args.cohort_ids))
        view["subset_of"] = str(args.from_run)
    else:
        view = views.reread(Path(args.from_run), args.test_patients)
    views.write_view(args.out, view)
    return 0


TRAIN_EPILOG = """a minimal config for your own data (every field: docs/configuration.md; commented:
examples/own-data.toml):

  setting = "MIX-CT-MRI"   # DUIIT: the predictor learns from CT plus MRI translated to CT
  ct = "data/ct"           # dataset folders: labels.csv (patient_id,age,path) + images
  mri = "data/mri"         # (relative to the config file)
  image_size = 128
  epochs = 20

Without ct/mri it trains on the embedded head phantom: examples/tiny.toml takes seconds.
"""


def _cohorts(text: str):
    """--cohorts: a count (the first N cohorts) or cohort ids (A-B, 0,2,4)."""
    import argparse
    from ..errors import DuiitConfigError
    from ..experiment_views import parse_cohorts
    if text.strip().isdigit():
        return int(text)
    try:
        return parse_cohorts(text)
    except DuiitConfigError:
        raise argparse.ArgumentTypeError(f"expected N, A-B or ids like 0,2,4, got {text[:40]!r}") from None


def add_parsers(sub) -> None:
    d = sub.add_parser("demo", help="PURE-CT vs DUIIT vs ORACLE on the embedded head phantom",
                       description="Render a phantom cohort, train PURE-CT, MIX-CT-MRI (DUIIT) and the ORACLE "
                                   "bound, evaluate on held-out CT patients and write metrics.json, report.md, "
                                   "translations.png and loss_curves.png.")
    d.add_argument("--quick", action="store_true",
                   help="smoke-test sizes (about half a minute on 2 cores; the numbers mean nothing)")
    d.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.set_defaults(func=cmd_demo)

    import argparse
    t = sub.add_parser("train", help="train one setting from a TOML config",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train the setting of a TOML config (fields of duiit_fast.TrainConfig; "
                                   "a [phantom] table for the embedded data, or ct/mri/pet dataset folders). "
                                   "Checkpoints are written atomically every epoch; the run folder gets\n"
                                   "train.log, options.toml, metrics.json and, every epoch, translations.png, "
                                   "val_scatter.png,\nloss_curves.png and index.html.",
                       epilog=TRAIN_EPILOG)
    t.add_argument("--config", required=True, help="TOML file")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoint in the output folder")
    t.add_argument("--overwrite", action="store_true",
                   help="replace a run already in the output folder (without it, and without --resume, "
                        "a folder holding a checkpoint is refused)")
    t.add_argument("--out", help="output folder (overrides out_dir of the config; apart from the data folders)")
    t.add_argument("--splits", type=int, metavar="N",
                   help="run split seeds 0..N-1 (the paper's protocol: N=10) into OUT/split-<seed> and "
                        "report mean ± std test MSE")
    t.add_argument("--on-bad-file", choices=["error", "skip"],
                   help="error (default): stop at the first bad file; skip: leave it out and count it")
    t.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="data-parallel training in N processes on this machine (torchrun; one GPU each on "
                        "CUDA, gloo on CPU); rank 0 writes the checkpoint and metrics")
    t.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="distributed runs: seconds a rank waits for the others before the job stops "
                        "(default 600)")
    t.add_argument("--no-progress", action="store_true",
                   help="no progress bar, options or epoch lines on the terminal (train.log still has them)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="change one field of the configuration (repeatable), as in `experiment`: epochs=2, "
                        "phantom.seed=3, fast.precision=fp32")
    t.set_defaults(func=cmd_train)

    from ..arms import DEFAULT_ARMS
    ex = sub.add_parser("experiment", help="PURE / ORACLE / NAIVE / two-stage CycleGAN / DUIIT over phantom cohorts",
                        description="Train every arm on each phantom cohort (one process per arm × cohort, "
                                    "the same predictor budget everywhere, paired by cohort) and write "
                                    "OUT/results.json, OUT/report.md (mean ± std, gap closed, paired t-test and "
                                    "Wilcoxon p-values), a bar plot and translation grids. Finished cells are "
                                    "skipped on a rerun, so an interrupted experiment resumes; one experiment "
                                    "at a time per folder. Each arm's "
                                    "predictor is evaluated with the BatchNorm statistics its own validation "
                                    "chose (predictor_bn_stats = by_setting; --set predictor_bn_stats=real_ct "
                                    "gives every arm real-CT statistics).")
    ex.add_argument("--cohorts", type=_cohorts, default=5, metavar="N|A-B|IDS",
                    help="phantom cohorts: N runs cohorts 0..N-1 (default 5); A-B or ids like 40,41,50-59 name them "
                         "(cohort c: phantom seed = split seed = training seed = c; fresh ids are fresh patients)")
    ex.add_argument("--seeds", type=int, default=1,
                    help="training seeds per cohort (default 1): each cell is trained this many times on the same "
                         "patients and reported as their mean, so the paired tests see less of one run's "
                         "trajectory noise; K seeds take K times as long. A folder run with fewer seeds is "
                         "extended (its cells are the first seed)")
    ex.add_argument("--out", required=True, help="output folder")
    ex.add_argument("--config", metavar="FILE",
                    help="your own data: a TOML with ct and mri/pet folders (and sizes); with --splits N every arm "
                         "is trained on N patient-level splits of them (default arms: PURE-CT, NAIVE, the "
                         "two-stage CycleGAN and DUIIT of the config's source), paired by split, and the report ends "
                         "with a recommendation")
    ex.add_argument("--splits", type=int, metavar="N",
                    help="with --config: patient-level splits (split seeds 0..N-1) to compare the arms over")
    ex.add_argument("--arms", nargs="+", metavar="ARM",
                    help=f"settings to compare (default on the phantom: {' '.join(DEFAULT_ARMS)}); SETTING@ct_reader runs a "
                         "setting with pred_feedback = ct_reader; TL-CT-MRI, MTL-CT-MRI, DANN-CT-MRI, AUG-SIMPLE, "
                         "AUG-AUTO and AUG-ERASING are the paper's other baselines; 'all' runs the defaults and those")
    ex.add_argument("--workers", type=int, help="processes at a time (default: min(cores, 2))")
    ex.add_argument("--quick", action="store_true", help="smoke-test sizes (seconds per cell; not a result)")
    ex.add_argument("--device", help="auto (CUDA when present; the default), cpu or cuda[:N]")
    ex.add_argument("--fid-weights", dest="fid_weights", metavar="FILE",
                    help="Inception v3 weights as a local .pth: torch-fidelity's TF-Inception "
                         "(pt_inception-2015-12-05-6726825d.pth, the standard FID) or torchvision's "
                         "ImageNet file; adds IS and FID of G(source) against real CT to every "
                         "translator arm (Table 5)")
    ex.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                    help="auto (default: bf16 on CUDA and on CPUs with native bf16, fp32 on other CPUs), "
                         "fp32 or bf16")
    ex.add_argument("--compile", choices=["auto", "on", "off"],
                    help="torch.compile the steps: auto (default: on CUDA), on or off. Each cell is its own "
                         "process and compiles anew, so short cells may be faster with off")
    ex.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="change one field of the experiment's configuration for every arm (repeatable), e.g. "
                         "--set lambda_pred=4e-3 --set translator_warmup_steps=800; choose on validation MSE, "
                         "and use a new --out folder per configuration")
    views = ex.add_argument_group("views of finished experiments (no training; --out must be new)")
    views.add_argument("--from", dest="from_run", metavar="RUN",
                       help="a finished experiment folder to restate (--cohort-ids) or re-read (--test-patients)")
    views.add_argument("--cohort-ids", metavar="IDS",
                       help="with --from: the results over these cohorts only, e.g. 5-14 or 0,2,4, tests recomputed")
    views.add_argument("--test-patients", type=int, metavar="N",
                       help="with --from: every cell's selected predictor read on N test patients per cohort "
                            "(after reproducing its recorded MSE on the original ones)")
    views.add_argument("--compose", nargs="+", action="append", metavar="SOURCE ARM",
                       help="a results.json or experiment folder, then the arms to take from it (repeatable), "
                            "all run with this configuration; --cohorts and --seeds give the shape")
    ex.set_defaults(func=cmd_experiment)
