"""Figures for reports: loss curves and translation grids (matplotlib, no display needed)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from ..io import atomic_path  # noqa: E402


def _save(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def loss_curves(histories: dict, path) -> None:
    """One panel per loss term; one line per setting. histories: setting → list of epoch records."""
    terms = [t for t in ("pred", "trans", "d_t", "d_s") if any(t in r for h in histories.values() for r in h)]
    fig, axes = plt.subplots(1, len(terms), figsize=(4.2 * len(terms), 3.4), squeeze=False)
    titles = {"pred": "predictor training MSE (years²)", "trans": "translator loss L_trans",
              "d_t": "CT critic D_t", "d_s": "source critic D_s"}
    for ax, term in zip(axes[0], terms):
        for setting, history in histories.items():
            pts = [(r["epoch"] + 1, r[term]) for r in history if term in r]
            if pts:
                ax.plot(*zip(*pts), label=setting, marker="." if len(pts) < 40 else None)
        ax.set_title(titles[term])
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # epochs are whole: no 1.25, 1.5 ticks
        ax.grid(alpha=0.3)
        if term == "pred":
            ax.set_yscale("log")
            ax.legend()
    _save(fig, path)


def translation_grid(rows: list[tuple[str, np.ndarray]], captions: list[str], path,
                     captions_at: dict | None = None) -> None:
    """rows: (label, (K, H, W) images in [-1, 1]); one column per example. captions title the top
    row; captions_at (row index → captions) titles other rows too (a grid of several sources)."""
    k = len(captions)
    titled = {0: captions, **(captions_at or {})}
    fig, axes = plt.subplots(len(rows), k, figsize=(1.9 * k, 2.0 * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(k):
            ax = axes[r][c]
            ax.imshow(images[c], cmap="gray", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
            if r in titled:
                ax.set_title(titled[r][c], fontsize=8)
    _save(fig, path)


def plain_text(text: str) -> str:
    """A name from data as matplotlib text: `$` would open mathtext (and a bad formula raises)."""
    return text.replace("$", r"\$")


def age_scatter(predicted: np.ndarray, true: np.ndarray, title: str, path) -> None:
    """Predicted against true age, one point per slice, with the identity line."""
    fig, ax = plt.subplots(figsize=(4.0, 4.0))
    lo, hi = float(min(true.min(), predicted.min())), float(max(true.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], color="0.6", lw=1, label="predicted = true")
    ax.scatter(true, predicted, s=6, alpha=0.5)
    ax.set_xlabel("true age (years)")
    ax.set_ylabel("predicted age (years)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)
