"""What a run leaves in its folder besides the checkpoint, as the CycleGAN reference code does: at the
start options.toml (the configuration, `duiit train --config` reads it back; what each "auto" became
here in its first lines) and the options printed; train.log (progress.py); after every epoch a line
there and, with cfg.pictures, the pictures:

- translations.png: fixed source slices (the middle slice of evenly spaced patients) → G(source) →
  F(G(source)), the cycle; on the phantom also the same patients rendered as CT;
- val_scatter.png: the predictor's age against the true age on the validation slices;
- loss_curves.png: every loss term per epoch;
- index.html: each epoch's pictures (kept under images/), newest first.
Only the writing rank (rank 0) calls these.
"""
from __future__ import annotations

import html
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from ..config_doc import config_toml
from ..errors import printable
from ..io import atomic_path, write_text
from .progress import options_text, short_losses

PICTURE_SLICES = 4      # source slices in translations.png
IMAGES = "images"       # each epoch's pictures, which index.html shows


def resolved_options(t) -> dict:
    """What the run's "auto" values became on this machine."""
    from .fast import resolve_fast_path
    fast = t.fast or resolve_fast_path(t.cfg, t.device)
    from .. import ops
    ops_ran = ", ".join(f"{op} {ops.resolve(op, fast.backend, t.device)}" for op in ops.dispatch.AUTO)
    return {"device": str(t.device), "precision": "bf16" if fast.bf16 else "fp32",
            "compile": "on" if fast.compile else "off", "ops": ops_ran,
            "channels_last": fast.channels_last, "decay_start_epoch": t.cfg.decay_epoch,
            "n_blocks": t.cfg.resolved_n_blocks, "threads": torch.get_num_threads()}


def start(t, folder: Path, resumed: bool) -> None:
    """train.log opened (appended to: an earlier run's lines are kept), the options shown and logged,
    options.toml written."""
    if not t.world.is_main:
        return
    resolved = resolved_options(t)
    t.monitor.open_log(folder, t.cfg.log_every)
    t.monitor.line(f"=== {'resumed at epoch ' + str(t.epoch) if resumed else 'run started'}: "
                   f"{t.cfg.setting}, {t.cfg.epochs} epochs ===", echo=False)
    t.monitor.block(options_text(t.cfg, resolved), options_text(t.cfg, resolved, changed_only=True)
                    + f"\n(every option: {folder / 'train.log'}; as a config: {folder / 'options.toml'})")
    header = (f"The configuration of the run in this folder (duiit train, {time.strftime('%Y-%m-%d %H:%M')}).\n"
              "Resolved on this machine: " + ", ".join(f"{k} {v}" for k, v in resolved.items()))
    write_text(folder / "options.toml", config_toml(t.cfg, header))


def epoch_done(t, record: dict, folder: Path) -> None:
    """The epoch's line in train.log (shown too) and, with cfg.pictures, its pictures."""
    if not t.world.is_main:
        return
    best = t.best
    val = f"val MSE {record['val_mse']:.2f} years²" if "val_mse" in record else "no validation"
    if best is not None and "val_mse" in record:
        val += f" (best {best['val_mse']:.2f} at epoch {best['epoch'] + 1})"
    losses = {k: record[k] for k in t.monitor.loss_names if k in record}
    t.monitor.line(f"epoch {t.epoch}/{t.cfg.epochs}: {val}; {short_losses(losses)}; "
                   f"{record['seconds']:.1f} s ({record['pairs_per_s']:.1f} pairs/s)")
    if t.cfg.pictures:
        draw_pictures(t, folder)


def draw_pictures(t, folder: Path) -> dict:
    """This epoch's pictures under images/, the newest also at the folder's top, and index.html.
    Returns {kind: file name of the newest}."""
    from ..eval import plots
    images = folder / IMAGES
    images.mkdir(exist_ok=True)
    tag = f"epoch-{t.epoch:03d}"
    made = {}
    if "G" in t.nets:
        made["translations"] = _translations(t, images / f"{tag}-translations.png")
    val = t.data.ct_val
    predicted = t.predict(val.images).numpy()
    mse = float(np.mean((predicted - val.ages.numpy()) ** 2))
    plots.age_scatter(predicted, val.ages.numpy(), f"{plots.plain_text(t.cfg.setting)}, epoch {t.epoch}: "
                      f"validation MSE {mse:.1f} years²", images / f"{tag}-val_scatter.png")
    made["val_scatter"] = images / f"{tag}-val_scatter.png"
    for kind, path in made.items():
        with atomic_path(folder / f"{kind}.png") as tmp:
            shutil.copyfile(path, tmp)
    plots.loss_curves({t.cfg.setting: t.history}, folder / "loss_curves.png")
    write_text(folder / "index.html", index_html(t, folder))
    return {kind: f"{kind}.png" for kind in made}


def fixed_slices(slices, count: int) -> list[int]:
    """The middle slice of `count` evenly spaced patients: the same slices every epoch."""
    patients = slices.patients
    picks = [patients[i] for i in np.linspace(0, len(patients) - 1, min(count, len(patients))).astype(int)]
    rows = []
    for pid in picks:
        of_patient = np.nonzero(slices.patient_ids == pid)[0]
        rows.append(int(of_patient[len(of_patient) // 2]))
    return rows


def _translations(t, path: Path) -> Path:
    from ..eval import plots
    rows, titles = [], {}
    captions = None
    for source in t.nets["G"]:
        slices = t.data.sources[source]
        idx = fixed_slices(slices, PICTURE_SLICES)
        x = slices.images[idx]
        translated = t.translate(x, source)
        cycled = t.translate(translated, source, net="F")
        these = [plots.plain_text(printable(f"{slices.patient_ids[i]}, age {float(slices.ages[i]):.0f}"))
                 for i in idx]
        titles[len(rows)] = these
        captions = captions or these
        name = source.upper()
        rows += [(f"source {name}", x[:, 0].numpy()), (f"G({name}) → CT", translated[:, 0].numpy()),
                 (f"F(G({name})) cycle", cycled[:, 0].numpy())]
        if source in t.data.sources_as_ct:   # the phantom: the same patients rendered as CT
            rows.append(("same patient as CT", t.data.sources_as_ct[source].images[idx, 0].numpy()))
    width = min(len(c) for c in titles.values())
    plots.translation_grid([(label, images[:width]) for label, images in rows], captions[:width], path,
                           {r: c[:width] for r, c in titles.items()})
    return path


def index_html(t, folder: Path) -> str:
    """Every epoch's pictures that exist under images/, newest first (CycleGAN's web page)."""
    esc = html.escape
    parts = [f"<!doctype html><meta charset='utf-8'><title>{esc(t.cfg.setting)} — duiit run</title>",
             "<style>body{font-family:sans-serif;margin:1.5em} img{max-width:100%;margin:4px}</style>",
             f"<h1>{esc(t.cfg.setting)}: {t.epoch} of {t.cfg.epochs} epochs</h1>",
             "<p>Options: <a href='options.toml'>options.toml</a>; log: <a href='train.log'>train.log</a></p>",
             "<h2>Loss curves</h2><img src='loss_curves.png' alt='loss curves'>"]
    for record in reversed(t.history):
        n = record["epoch"] + 1
        val = f": validation MSE {record['val_mse']:.2f} years²" if "val_mse" in record else ""
        parts.append(f"<h2>epoch {n}{esc(val)}</h2>")
        for kind in ("translations", "val_scatter"):
            name = f"{IMAGES}/epoch-{n:03d}-{kind}.png"
            if (folder / name).is_file():
                parts.append(f"<img src='{name}' alt='{kind}, epoch {n}'>")
    return "\n".join(parts) + "\n"
