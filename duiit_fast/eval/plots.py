"""Figures for reports: loss curves and translation grids (matplotlib, no display needed)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
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
        ax.grid(alpha=0.3)
        if term == "pred":
            ax.set_yscale("log")
            ax.legend()
    _save(fig, path)


def translation_grid(rows: list[tuple[str, np.ndarray]], captions: list[str], path) -> None:
    """rows: (label, (K, H, W) images in [-1, 1]); one column per example."""
    k = len(captions)
    fig, axes = plt.subplots(len(rows), k, figsize=(1.9 * k, 2.0 * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(k):
            ax = axes[r][c]
            ax.imshow(images[c], cmap="gray", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
            if r == 0:
                ax.set_title(captions[c], fontsize=8)
    _save(fig, path)
