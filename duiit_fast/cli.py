"""The `duiit` command. User errors print one line on stderr and exit with status 2."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_demo(args) -> int:
    from .demo import run_demo
    run_demo(args.out, quick=args.quick, progress=not args.no_progress)
    return 0


def _cmd_train(args) -> int:
    from .config import TrainConfig
    from .errors import DuiitConfigError
    from .train.distributed import launched_by_torchrun
    if args.nproc < 1:
        raise DuiitConfigError(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc > 1 and args.splits is not None:
        raise DuiitConfigError("--splits runs its splits one after another: use it without --nproc")
    if args.nproc > 1 and not launched_by_torchrun():
        return _spawn_torchrun(args.nproc, args.argv)
    cfg = TrainConfig.from_toml(args.config)
    if args.out:
        cfg.out_dir = args.out
    if args.on_bad_file:
        cfg.on_bad_file = args.on_bad_file
    if args.splits is not None:
        from .train.protocol import run_splits
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
    from .errors import DuiitError
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
    from .train.distributed import init_from_env, leaving_world
    world = init_from_env(cfg.device, args.timeout)
    with leaving_world():
        return _train_once(cfg, args, main=world.is_main)


def _train_once(cfg, args, main: bool = True) -> int:
    from .io import write_json
    from .train.trainer import Trainer
    trainer = Trainer(cfg, progress=main and not args.no_progress)
    trainer.fit(resume=args.resume, overwrite=args.overwrite)
    if not main:
        return 0
    metrics = {split: trainer.evaluate(split) for split in ("val", "test")}
    write_json(Path(cfg.out_dir) / "metrics.json", {"setting": cfg.setting, **metrics})
    print(f"{cfg.setting}: val MSE {metrics['val']['mse']:.2f}, test MSE {metrics['test']['mse']:.2f} "
          f"years² ({trainer.split_protocol} split); checkpoint and metrics.json in {cfg.out_dir}")
    return 0


def _cmd_experiment(args) -> int:
    import dataclasses
    from .experiment import experiment_config, run_experiment
    overrides = {k: getattr(args, k) for k in ("device", "precision", "compile", "fid_weights")
                 if getattr(args, k) is not None}
    if "fid_weights" in overrides:   # every cell is a process of its own: an absolute path
        overrides["fid_weights"] = str(Path(overrides["fid_weights"]).resolve())
    base = dataclasses.replace(experiment_config(args.quick), **overrides).with_settings(args.set or [])
    run_experiment(args.out, cohorts=args.cohorts, arms=args.arms, workers=args.workers, base=base, seeds=args.seeds)
    return 0


def _bench_variants(names):
    from .bench import VARIANTS, variant_by_name
    from .errors import DuiitConfigError
    try:
        return [variant_by_name(n) for n in names] if names else list(VARIANTS)
    except ValueError as exc:
        raise DuiitConfigError(str(exc)) from None


def _bench_device(name: str) -> str:
    import torch
    from .errors import DuiitConfigError
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DuiitConfigError(f"--device {name}: CUDA is not available on this machine")
    return name


def _cmd_bench(args) -> int:
    from .bench import format_table, run_bench
    from .errors import DuiitConfigError
    from .io import write_json
    if args.rounds < 1:
        raise DuiitConfigError(f"--rounds must be at least 1, got {args.rounds}")
    result = run_bench(args.size, _bench_variants(args.variants), _bench_device(args.device), rounds=args.rounds,
                       log=lambda m: print(m, file=sys.stderr), cached_compile=not args.no_cached_compile)
    print(format_table(result))
    if args.json:
        write_json(args.json, result)
    return 0


def _cmd_profile(args) -> int:
    from .bench import run_profile
    from .errors import DuiitConfigError
    if args.steps < 1:
        raise DuiitConfigError(f"--steps must be at least 1, got {args.steps}")
    variant, = _bench_variants([args.variant])
    print(run_profile(args.size, variant, _bench_device(args.device), args.steps, args.out))
    return 0


def _load_model(path):
    from .errors import DuiitConfigError
    from .train.trainer import Trainer
    if not Path(path).is_file():
        raise DuiitConfigError(f"--model {path}: no such checkpoint file")
    return Trainer.load(path)


def _progress(args):
    if args.no_progress:
        return None
    from tqdm.auto import tqdm
    return lambda it, desc: tqdm(it, desc=desc, leave=False)


def _cmd_predict(args) -> int:
    from .use import predict, read_inputs
    trainer = _load_model(args.model)
    summary = predict(trainer, read_inputs(args.inputs, "ct", args.on_bad_file), args.out, _progress(args))
    known = f"; MSE {summary['mse']:.2f} years² where ages are known" if "mse" in summary else ""
    print(f"{summary['patients']} patient(s), {summary['slices']} slice(s){known}: "
          f"{Path(args.out) / 'slices.csv'}, {Path(args.out) / 'patients.csv'}")
    return 0


def _cmd_translate(args) -> int:
    from .use import read_inputs, translated_patients, write_ct_dataset
    trainer = _load_model(args.model)
    volumes = read_inputs(args.inputs, args.source, args.on_bad_file)
    n = write_ct_dataset(trainer, list(translated_patients(trainer, volumes, args.source)), args.out, args.format,
                         _progress(args))
    print(f"translated {len(volumes)} {args.source} patient(s), {n} slice(s) into a CT-like dataset: {args.out}")
    return 0


def _cmd_export(args) -> int:
    from .use import export_training_set
    trainer = _load_model(args.model)
    s = export_training_set(trainer, args.out, args.format, _progress(args))
    print(f"exported {s['ct_patients']} real CT + {s['translated_patients']} translated patient(s), "
          f"{s['slices']} slice(s): {args.out}")
    return 0


def _cmd_data_check(args) -> int:
    from .data.check import check_target
    report, clean = check_target(args.target, on_bad_file=args.on_bad_file)
    from .errors import printable
    print(printable(report, one_line=False))
    return 0 if clean else 1


def _cmd_phantoms(args) -> int:
    from .config import PhantomConfig
    from .data.writer import write_phantom_dataset
    from .errors import DuiitConfigError
    for flag, value, least in (("--ct-patients", args.ct_patients, 1), ("--source-patients", args.source_patients, 1),
                               ("--slices", args.slices, 1), ("--ct-size", args.ct_size, 8),
                               ("--mri-size", args.mri_size, 8), ("--pet-size", args.pet_size, 8)):
        if value < least:
            raise DuiitConfigError(f"{flag} must be at least {least}, got {value}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise DuiitConfigError(f"--out {args.out} is a file, not a folder")
    pc = PhantomConfig(ct_train_patients=args.ct_patients, ct_val_patients=0, ct_test_patients=0,
                       source_patients=args.source_patients, slices_per_patient=args.slices,
                       ct_size=args.ct_size, mri_size=args.mri_size, pet_size=args.pet_size, seed=args.seed)
    written = write_phantom_dataset(args.out, pc, args.modalities, fmt=args.format,
                                    progress=not args.no_progress)
    for modality, (folder, n_patients, n_files) in written.items():
        print(f"{modality}: {n_patients} patients, {n_files} files → {folder}")
    return 0


def _cmd_doctor(args) -> int:
    from .doctor import report
    print(report())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="duiit",
        description="DUIIT: translate MRI/PET slices into CT style with a translator trained jointly "
                    "with the CT predictor, and measure what it buys.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    d = sub.add_parser("demo", help="PURE-CT vs DUIIT vs ORACLE on the embedded head phantom",
                       description="Render a phantom cohort, train PURE-CT, MIX-CT-MRI (DUIIT) and the ORACLE "
                                   "bound, evaluate on held-out CT patients and write metrics.json, report.md, "
                                   "translations.png and loss_curves.png.")
    d.add_argument("--quick", action="store_true",
                   help="smoke-test sizes (about half a minute on 2 cores; the numbers mean nothing)")
    d.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.set_defaults(func=_cmd_demo)

    t = sub.add_parser("train", help="train one setting from a TOML config",
                       description="Train the setting of a TOML config (fields of duiit_fast.TrainConfig; "
                                   "a [phantom] table for the embedded data, or ct/mri/pet dataset folders). "
                                   "Checkpoints are written atomically every epoch.")
    t.add_argument("--config", required=True, help="TOML file")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoint in the output folder")
    t.add_argument("--overwrite", action="store_true",
                   help="replace a run already in the output folder (without it, and without --resume, "
                        "a folder holding a checkpoint is refused)")
    t.add_argument("--out", help="output folder (overrides out_dir of the config)")
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
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.set_defaults(func=_cmd_train)

    from .experiment import DEFAULT_ARMS
    ex = sub.add_parser("experiment", help="PURE / ORACLE / NAIVE / two-stage CycleGAN / DUIIT over phantom cohorts",
                        description="Train every arm on each phantom cohort (one process per arm × cohort, "
                                    "the same predictor budget everywhere, paired by cohort) and write "
                                    "OUT/results.json, OUT/report.md (mean ± std, gap closed, paired t-test and "
                                    "Wilcoxon p-values), a bar plot and translation grids. Finished cells are "
                                    "skipped on a rerun, so an interrupted experiment resumes. Each arm's "
                                    "predictor is evaluated with the BatchNorm statistics its own validation "
                                    "chose (predictor_bn_stats = by_setting; --set predictor_bn_stats=real_ct "
                                    "gives every arm real-CT statistics).")
    ex.add_argument("--cohorts", type=int, default=5, help="phantom cohorts (default 5)")
    ex.add_argument("--seeds", type=int, default=1,
                    help="training seeds per cohort (default 1): each cell is trained this many times on the same "
                         "patients and reported as their mean, so the paired tests see less of one run's "
                         "trajectory noise; K seeds take K times as long. A folder run with fewer seeds is "
                         "extended (its cells are the first seed)")
    ex.add_argument("--out", required=True, help="output folder")
    ex.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS), metavar="ARM",
                    help=f"settings to compare (default: {' '.join(DEFAULT_ARMS)}); SETTING@ct_reader runs a "
                         "setting with pred_feedback = ct_reader; TL-CT-MRI, MTL-CT-MRI, DANN-CT-MRI, AUG-SIMPLE, AUG-AUTO and "
                         "AUG-ERASING are the paper's other baselines; 'all' runs the defaults and those")
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
                         "--set lambda_pred=4e-3 --set joint_warmup_steps=800; choose on validation MSE, "
                         "and use a new --out folder per configuration")
    ex.set_defaults(func=_cmd_experiment)

    from .bench import SIZES, VARIANTS
    variant_names = ", ".join(v.name.replace(" ", "-") for v in VARIANTS)
    sizes = "; ".join(f"{k}: {v['image_size']}², {v['batch_size']} pairs, ngf {v['ngf']}, {v['predictor']} predictor"
                      for k, v in SIZES.items())
    bn = sub.add_parser("bench", help="time the joint step: eager reference vs fused ops, compile, bf16",
                        description="Time one joint DUIIT step (synthetic batch) for each variant, interleaved, "
                                    "and print step time, pairs/s, speed-up against the eager reference fp32, "
                                    "MFU against the measured matmul ceiling, cold and cached compile time and "
                                    f"the projected wall time of the paper's MIX-CT-MRI schedule. Sizes: {sizes}.")
    bn.add_argument("--size", choices=list(SIZES), default="M")
    bn.add_argument("--variants", nargs="+", metavar="VARIANT",
                    help=f"default: all ({variant_names}); compiled-reference-fp32-unrolled and "
                         "compiled-reference-bf16-unrolled time the compiled step without the CPU's "
                         "block regions (each residual block compiled once)")
    bn.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    bn.add_argument("--rounds", type=int, default=10, help="interleaved timing rounds (default 10)")
    bn.add_argument("--json", help="also write the numbers to this JSON file")
    bn.add_argument("--no-cached-compile", action="store_true",
                    help="skip the second, warm-cache compile of each compiled variant (saves its time)")
    bn.set_defaults(func=_cmd_bench)

    pr = sub.add_parser("profile", help="torch.profiler trace and top-ops table of the joint step",
                        description="Profile warm joint steps of one variant: writes a Chrome trace "
                                    "(chrome://tracing, Perfetto) and the top-ops table to OUT.")
    pr.add_argument("--size", choices=list(SIZES), default="M")
    pr.add_argument("--variant", default="eager-reference-fp32", help=f"one of {variant_names}")
    pr.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    pr.add_argument("--steps", type=int, default=3)
    pr.add_argument("--out", default="runs/profile", help="output folder (default runs/profile)")
    pr.set_defaults(func=_cmd_profile)

    pd = sub.add_parser("predict", help="ages from CT with a trained model",
                        description="Predict ages for CT slices with a checkpoint: dataset folders (labels.csv; "
                                    "the MSE is reported) or image files / DICOM series folders. Writes "
                                    "OUT/slices.csv and OUT/patients.csv (mean over a patient's slices).")
    pd.add_argument("--model", required=True, help="a checkpoint written by duiit train / experiment")
    pd.add_argument("inputs", nargs="+", metavar="DIR_OR_FILE")
    pd.add_argument("--out", required=True, help="output folder")
    pd.add_argument("--on-bad-file", choices=["error", "skip"], default="error")
    pd.add_argument("--no-progress", action="store_true")
    pd.set_defaults(func=_cmd_predict)

    tr = sub.add_parser("translate", help="MRI/PET dataset → CT-like dataset with a trained DUIIT model",
                        description="Translate a labelled source dataset folder into CT style with the model's "
                                    "G and write it as a dataset folder (labels.csv + 16-bit PNG slices in HU, "
                                    "or NIfTI volumes) that duiit train reads as CT.")
    tr.add_argument("--model", required=True)
    tr.add_argument("--source", choices=["mri", "pet"], required=True)
    tr.add_argument("inputs", nargs="+", metavar="DIR")
    tr.add_argument("--out", required=True, help="output dataset folder")
    tr.add_argument("--format", choices=["png", "nifti"], default="png")
    tr.add_argument("--on-bad-file", choices=["error", "skip"], default="error")
    tr.add_argument("--no-progress", action="store_true")
    tr.set_defaults(func=_cmd_translate)

    exp = sub.add_parser("export", help="write a model's augmented training set (real CT + translated sources)",
                         description="Write the run's real CT training patients and its source training patients "
                                     "translated by G (named SOURCE-PATIENT) as one labelled CT dataset folder at "
                                     "the training size, for training in another framework or with duiit train.")
    exp.add_argument("--model", required=True)
    exp.add_argument("--out", required=True, help="output dataset folder")
    exp.add_argument("--format", choices=["png", "nifti"], default="png")
    exp.add_argument("--no-progress", action="store_true")
    exp.set_defaults(func=_cmd_export)

    dt = sub.add_parser("data", help="dataset tools")
    dsub = dt.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    chk = dsub.add_parser("check", help="validate datasets and summarise them",
                          description="Validate a dataset folder (labels.csv + images), a folder of "
                                      "ct/ mri/ pet/ datasets, or the datasets of a TOML config; print slices, "
                                      "patients, ages, native resolutions and intensity ranges per modality. "
                                      "Exit 0 when clean, 2 on the first bad file (or, with --on-bad-file skip, "
                                      "1 when files were skipped).")
    chk.add_argument("target", metavar="DIR_OR_CONFIG")
    chk.add_argument("--on-bad-file", choices=["error", "skip"], default="error")
    chk.set_defaults(func=_cmd_data_check)

    ph = sub.add_parser("phantoms", help="write the head phantom to disk as a labelled dataset",
                        description="Write CT/MRI/PET phantom patients as dataset folders (images + labels.csv "
                                    "with patient_id,age,path) that `duiit train` reads back.")
    ph.add_argument("--out", required=True, help="output folder (one subfolder per modality)")
    ph.add_argument("--modalities", nargs="+", default=["ct", "mri", "pet"], choices=["ct", "mri", "pet"])
    ph.add_argument("--ct-patients", type=int, default=82, help="CT patients (default 82, as the paper's set)")
    ph.add_argument("--source-patients", type=int, default=110, help="patients per source modality (default 110)")
    ph.add_argument("--slices", type=int, default=30, help="axial slices per patient (default 30)")
    ph.add_argument("--ct-size", type=int, default=650)
    ph.add_argument("--mri-size", type=int, default=256)
    ph.add_argument("--pet-size", type=int, default=128)
    ph.add_argument("--format", choices=["png", "npy", "dicom", "nifti"], default="png",
                    help="png: one 16-bit PNG per slice; npy: one float32 volume per patient; "
                         "dicom: one series folder per patient; nifti: one .nii.gz volume per patient")
    ph.add_argument("--seed", type=int, default=0)
    ph.add_argument("--no-progress", action="store_true", help="no progress bars")
    ph.set_defaults(func=_cmd_phantoms)

    doc = sub.add_parser("doctor", help="what is installed and usable: torch, CUDA, Triton, DALI, the extension")
    doc.set_defaults(func=_cmd_doctor)
    return p


def main(argv=None) -> int:
    from .errors import DuiitError, printable
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)   # `train --nproc` hands it to torchrun
    try:
        return args.func(args)
    except DuiitError as exc:
        print(f"duiit: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:   # disk full, permission denied, a file where a folder should be
        print(f"duiit: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("duiit: interrupted (completed checkpoints are kept)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
