"""The verbs that read datasets or a model and write a folder: predict, translate, export, data
check, phantoms. Each output folder is checked before any input is read: apart from every input,
empty (or, with --overwrite, an earlier output of duiit), and it is swapped in complete."""
from __future__ import annotations

import sys
from pathlib import Path

OVERWRITE_HELP = ("replace an output folder that an earlier duiit command wrote (it is swapped for the new "
                  "one only once that is complete); without it a non-empty --out is refused")


def _progress(args):
    if args.no_progress:
        return None
    from tqdm.auto import tqdm
    return lambda it, desc: tqdm(it, desc=desc, leave=False, disable=None)   # None: no bar off a terminal


def load_model(path):
    from ..errors import DuiitConfigError
    from ..train.trainer import Trainer
    if not Path(path).is_file():
        raise DuiitConfigError(f"--model {path}: no such checkpoint file")
    return Trainer.load(path)


def _prepare_out(args, inputs) -> None:
    from ..io import check_output_folder
    from ..paths import check_apart
    check_apart(args.out, [*inputs, args.model])
    check_output_folder(args.out, args.overwrite)


def _report_skipped(skipped) -> None:
    from ..errors import printable
    for path, problem in skipped:
        print(printable(f"duiit: skipped {path}: {problem}"), file=sys.stderr)


def cmd_predict(args) -> int:
    from ..use import predict, read_inputs
    _prepare_out(args, args.inputs)
    trainer = load_model(args.model)
    skipped: list = []
    volumes = read_inputs(args.inputs, "ct", args.on_bad_file, skipped, png_rescale=args.png_rescale)
    summary = predict(trainer, volumes, args.out, _progress(args), args.overwrite)
    _report_skipped(skipped)
    known = f"; MSE {summary['mse']:.2f} years² where ages are known" if "mse" in summary else ""
    left_out = f"; {len(skipped)} bad file(s) skipped (listed above)" if skipped else ""
    print(f"{summary['patients']} patient(s), {summary['slices']} slice(s){known}{left_out}: "
          f"{Path(args.out) / 'slices.csv'}, {Path(args.out) / 'patients.csv'}")
    return 0


def cmd_translate(args) -> int:
    from ..use import read_inputs, translated_patients, write_ct_dataset
    _prepare_out(args, args.inputs)
    trainer = load_model(args.model)
    skipped: list = []
    volumes = read_inputs(args.inputs, args.source, args.on_bad_file, skipped)
    n = write_ct_dataset(trainer, list(translated_patients(trainer, volumes, args.source)), args.out, args.format,
                         _progress(args), args.overwrite)
    _report_skipped(skipped)
    left_out = f" ({len(skipped)} bad file(s) skipped, listed above)" if skipped else ""
    print(f"translated {len(volumes)} {args.source} patient(s), {n} slice(s) into a CT-like dataset{left_out}: "
          f"{args.out}")
    return 0


def cmd_export(args) -> int:
    from ..errors import DuiitConfigError
    if args.out is None and args.predictor is None:
        raise DuiitConfigError("export writes the training set (--out DIR), the predictor (--predictor FILE) "
                               "or both: give one")
    if args.predictor is not None:
        _check_predictor_file(args)
    trainer = load_model(args.model)
    if args.out is not None:
        from ..use import export_training_set
        cfg = trainer.cfg
        _prepare_out(args, [getattr(cfg, m) for m in ("ct", "mri", "pet") if getattr(cfg, m)])
        s = export_training_set(trainer, args.out, args.format, _progress(args), args.overwrite)
        print(f"exported {s['ct_patients']} real CT + {s['translated_patients']} translated patient(s), "
              f"{s['slices']} slice(s): {args.out}")
    if args.predictor is not None:
        from ..deploy import export_predictor
        path = export_predictor(trainer, args.predictor)
        loader = ("onnxruntime.InferenceSession(FILE)" if path.suffix.lower() == ".onnx"
                  else "torch.export.load(FILE).module()")
        print(f"exported the {trainer.cfg.setting} predictor: {path} (HU slices (N, H, W) → ages in years; "
              f"load with {loader}, no duiit_fast needed)")
    return 0


def _check_predictor_file(args) -> None:
    """Before the model is read: a new file (or --overwrite), not one of the inputs."""
    from ..errors import DuiitConfigError
    path = Path(args.predictor)
    if path.exists() and (path.is_dir() or not args.overwrite):
        raise DuiitConfigError(f"--predictor {path}: already exists" + ("" if path.is_dir() else
                                                                         "; --overwrite replaces it"))
    if path.resolve() == Path(args.model).resolve():
        raise DuiitConfigError(f"--predictor {path} is the model checkpoint itself")
    if not path.parent.is_dir():
        raise DuiitConfigError(f"--predictor {path}: no folder {path.parent}")


def cmd_data_check(args) -> int:
    from ..data.check import check_target
    from ..errors import printable
    report, clean = check_target(args.target, on_bad_file=args.on_bad_file)
    print(printable(report, one_line=False))
    return 0 if clean else 1


PHANTOM_FLAGS = (("--ct-patients", "ct_patients", "ct_train_patients"),
                 ("--source-patients", "source_patients", "source_patients"),
                 ("--slices", "slices", "slices_per_patient"), ("--ct-size", "ct_size", "ct_size"),
                 ("--mri-size", "mri_size", "mri_size"), ("--pet-size", "pet_size", "pet_size"),
                 ("--seed", "seed", "seed"))
STORED_BYTES_PER_PIXEL = {"png": 2, "dicom": 2, "nifti": 4, "npy": 4}   # before compression


def cmd_phantoms(args) -> int:
    import shutil
    from ..config import RANGES, PhantomConfig
    from ..errors import DuiitConfigError
    from ..io import check_output_folder
    for flag, attr, field_name in PHANTOM_FLAGS:
        allowed, value = RANGES[f"phantom.{field_name}"], getattr(args, attr)
        least = allowed.lo if field_name == "seed" else max(allowed.lo, 1)   # patients: at least one
        if value < least:
            raise DuiitConfigError(f"{flag} must be at least {least:g}, got {value}")
        if not allowed.holds(value):
            raise DuiitConfigError(f"{flag} must lie in {allowed}, got {value}")
    out = check_output_folder(args.out, args.overwrite)
    sizes = {"ct": args.ct_size, "mri": args.mri_size, "pet": args.pet_size}
    patients = {"ct": args.ct_patients, "mri": args.source_patients, "pet": args.source_patients}
    need = sum(patients[m] * args.slices * sizes[m] ** 2 for m in args.modalities) * STORED_BYTES_PER_PIXEL[args.format]
    free = shutil.disk_usage(next(p for p in (out, *out.parents) if p.exists())).free
    if need > free:
        raise DuiitConfigError(f"the phantoms need up to {need / 2 ** 30:.1f} GiB uncompressed, and {out.parent} has "
                               f"{free / 2 ** 30:.1f} GiB free: fewer patients, slices or a smaller size")
    pc = PhantomConfig(ct_train_patients=args.ct_patients, ct_val_patients=0, ct_test_patients=0,
                       source_patients=args.source_patients, slices_per_patient=args.slices,
                       ct_size=args.ct_size, mri_size=args.mri_size, pet_size=args.pet_size, seed=args.seed,
                       mri_contrast=args.mri_contrast)
    from ..data.writer import write_phantom_dataset
    written = write_phantom_dataset(args.out, pc, args.modalities, fmt=args.format,
                                    progress=not args.no_progress, overwrite=args.overwrite)
    for modality, (folder, n_patients, n_files) in written.items():
        print(f"{modality}: {n_patients} patients, {n_files} files → {folder}")
    return 0


DATASET_FORMAT_HELP = "png (default): 16-bit PNG slices that store their HU scale; nifti: one volume per patient"


def _bad_file_option(p) -> None:
    p.add_argument("--on-bad-file", choices=["error", "skip"], default="error",
                   help="error (default): stop at the first bad file; skip: leave it out and list it")


def _output_options(p, out_help: str, dataset_format: bool = True) -> None:
    """--out, --format (a dataset written as png or nifti), --overwrite and --no-progress."""
    p.add_argument("--out", required=True, help=out_help)
    if dataset_format:
        p.add_argument("--format", choices=["png", "nifti"], default="png", help=DATASET_FORMAT_HELP)
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_parsers(sub) -> None:
    pd = sub.add_parser("predict", help="ages from CT with a trained model",
                        description="Predict ages for CT slices with a checkpoint: dataset folders (labels.csv; "
                                    "the MSE is reported) or image files / DICOM series folders. Writes "
                                    "OUT/slices.csv and OUT/patients.csv (mean over a patient's slices).")
    pd.add_argument("--model", required=True, help="a checkpoint written by duiit train / experiment")
    pd.add_argument("inputs", nargs="+", metavar="DIR_OR_FILE",
                    help="dataset folders (labels.csv), image files or DICOM series folders; read from anywhere")
    _output_options(pd, "output folder (new or empty, apart from the inputs)", dataset_format=False)
    pd.add_argument("--png-rescale", nargs=2, type=float, metavar=("SLOPE", "INTERCEPT"),
                    help="HU = stored value·SLOPE + INTERCEPT for PNG/TIFF/JPEG files given without labels.csv "
                         "that do not store their own scale (1 -1024 for HU + 1024 files); without it such a "
                         "file is refused, never read as HU")
    _bad_file_option(pd)
    pd.set_defaults(func=cmd_predict)

    tr = sub.add_parser("translate", help="MRI/PET dataset → CT-like dataset with a trained DUIIT model",
                        description="Translate a labelled source dataset folder into CT style with the model's "
                                    "G and write it as a dataset folder (labels.csv + 16-bit PNG slices in HU, "
                                    "or NIfTI volumes) that duiit train reads as CT.")
    tr.add_argument("--model", required=True, help="a checkpoint of a translator setting (MIX-*, CYCLEGAN-*)")
    tr.add_argument("--source", choices=["mri", "pet"], required=True, help="the inputs' modality")
    tr.add_argument("inputs", nargs="+", metavar="DIR", help="labelled source dataset folders (labels.csv)")
    _output_options(tr, "output dataset folder (new or empty, apart from the inputs)")
    _bad_file_option(tr)
    tr.set_defaults(func=cmd_translate)

    exp = sub.add_parser("export", help="write a model's predictor as a deployable file, or its augmented training set",
                         description="--predictor FILE: the CT predictor as one file that runs without duiit_fast "
                                     "(.pt2: torch.export; .onnx: ONNX, needs onnx and onnxscript), taking CT "
                                     "slices in HU (N, H, W) of any size and returning ages in years, with the "
                                     "HU window, resize and age scaling inside. --out DIR: the run's real CT "
                                     "training patients and its source training patients translated by G (named "
                                     "SOURCE-PATIENT) as one labelled CT dataset folder at the training size.")
    exp.add_argument("--model", required=True, help="a checkpoint written by duiit train / experiment")
    exp.add_argument("--predictor", metavar="FILE",
                     help="write the deployable predictor here (.pt2 or .onnx; new, or replaced with --overwrite)")
    exp.add_argument("--out", help="write the augmented training set to this dataset folder (new or empty, apart "
                                   "from the run's data; needs the run's training data in place)")
    exp.add_argument("--format", choices=["png", "nifti"], default="png", help=DATASET_FORMAT_HELP)
    exp.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP + "; and a --predictor file")
    exp.add_argument("--no-progress", action="store_true", help="no progress bars")
    exp.set_defaults(func=cmd_export)

    dt = sub.add_parser("data", help="dataset tools")
    dsub = dt.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    chk = dsub.add_parser("check", help="validate datasets and summarise them",
                          description="Validate a dataset folder (labels.csv + images), a folder of "
                                      "ct/ mri/ pet/ datasets, or the datasets of a TOML config; print slices, "
                                      "patients, ages, native resolutions and intensity ranges per modality. "
                                      "Exit 0 when clean, 2 on the first bad file (or, with --on-bad-file skip, "
                                      "1 when files were skipped).")
    chk.add_argument("target", metavar="DIR_OR_CONFIG", help="a dataset folder, a folder of ct/mri/pet, or a TOML")
    chk.add_argument("--on-bad-file", choices=["error", "skip"], default="error",
                     help="error (default): stop at the first bad file; skip: list every bad file")
    chk.set_defaults(func=cmd_data_check)

    ph = sub.add_parser("phantoms", help="write the head phantom to disk as a labelled dataset",
                        description="Write CT/MRI/PET phantom patients as dataset folders (images + labels.csv "
                                    "with patient_id,age,path) that `duiit train` reads back.")
    ph.add_argument("--out", required=True, help="output folder (one subfolder per modality; new or empty)")
    ph.add_argument("--modalities", nargs="+", default=["ct", "mri", "pet"], choices=["ct", "mri", "pet"],
                    help="which modalities to write (default: all three)")
    ph.add_argument("--ct-patients", type=int, default=82, help="CT patients (default 82, as the paper's set)")
    ph.add_argument("--source-patients", type=int, default=110, help="patients per source modality (default 110)")
    ph.add_argument("--slices", type=int, default=30, help="axial slices per patient (default 30)")
    ph.add_argument("--ct-size", type=int, default=650, help="CT side in pixels (default 650)")
    ph.add_argument("--mri-size", type=int, default=256, help="MRI side in pixels (default 256)")
    ph.add_argument("--pet-size", type=int, default=128, help="PET side in pixels (default 128)")
    ph.add_argument("--format", choices=["png", "npy", "dicom", "nifti"], default="png",
                    help="png: one 16-bit PNG per slice; npy: one float32 volume per patient; "
                         "dicom: one series folder per patient; nifti: one .nii.gz volume per patient")
    ph.add_argument("--seed", type=int, default=0, help="the cohort's seed (default 0): patients and noise")
    ph.add_argument("--mri-contrast", choices=["t1", "t2", "flair"], default="t1",
                    help="how the MRI patients look (default t1; t2: CSF and lesions bright; flair: CSF "
                         "suppressed, lesions bright; docs/phantom.md)")
    ph.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    ph.add_argument("--no-progress", action="store_true", help="no progress bars")
    ph.set_defaults(func=cmd_phantoms)
