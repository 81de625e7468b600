"""Translator quality that does not depend on the co-trained predictor: the label-cue metric.

A reader trained on real CT (on the phantom also on the source patients rendered as CT) is applied
to G(source). If the translation keeps the anatomy that carries the label, the reader's ages on
G(source) track the source labels: slope ≈ 1 and a low MSE. A translator that erases the cues gives
slope ≈ 0 however pixel-close it looks; one that writes a private code for the co-trained P can fool
P but not this reader.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..models.reader import AgeReader


def train_reader(images: torch.Tensor, ages: torch.Tensor, steps: int, seed: int, device,
                 batch_size: int = 32, lr: float = 2e-3, on_step=None, report_every: int = 25) -> AgeReader:
    """Fit an AgeReader on (images, ages in years) with flips, AdamW and a one-cycle schedule; the
    result is frozen and in eval mode. on_step(losses) after every step (a progress bar): the loss is read
    only every report_every steps and at the last (None between), so the loop does not wait for the device
    at each step."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        reader = AgeReader(age_mean=float(ages.mean()), age_std=max(float(ages.std()), 1.0)).to(device)
    opt = torch.optim.AdamW(reader.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
    reader.train()
    for i in range(steps):
        idx = torch.randint(len(images), (batch_size,), generator=gen)
        x = images[idx]
        flip = torch.rand(batch_size, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        x = x.to(device)
        target = (ages[idx].to(device) - reader.age_mean) / reader.age_std
        loss = (reader.net(x).squeeze(1) - target).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if on_step is not None:
            report = (i + 1) % report_every == 0 or i + 1 == steps
            on_step({"reader": loss.detach().item()} if report else None)
    reader.eval()
    for p in reader.parameters():
        p.requires_grad_(False)
    return reader


@torch.no_grad()
def read_ages(reader: nn.Module, images: torch.Tensor, device, batch_size: int = 128) -> torch.Tensor:
    reader.eval()
    return torch.cat([reader(images[i:i + batch_size].to(device)).float().cpu()
                      for i in range(0, len(images), batch_size)])


@torch.no_grad()
def reader_features(reader: AgeReader, images: torch.Tensor, device, batch_size: int = 128) -> np.ndarray:
    """The reader's pooled features (N, F): the feature space of the domain FID."""
    reader.eval()
    return torch.cat([reader.net.features(images[i:i + batch_size].to(device)).mean(dim=(2, 3)).double().cpu()
                      for i in range(0, len(images), batch_size)]).numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """‖μa − μb‖² + tr(Σa + Σb − 2(ΣaΣb)^½) between Gaussians fitted to two feature sets (FID's formula).

    Evaluated exactly without a d × d matrix square root (d = 2048 for Inception: about a minute on
    2 cores): with the centred features A = Qa·Ra (QR; Ra is min(na, d) × d) and Σa = AᵀA/(na−1) =
    RaᵀRa/(na−1), the eigenvalues of ΣaΣb are the squared singular values of Ra·Rbᵀ/√((na−1)(nb−1)),
    so tr((ΣaΣb)^½) is that small matrix's nuclear norm. No complex rounding residue either."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    dof_a, dof_b = len(a) - 1, len(b) - 1
    r_a, r_b = np.linalg.qr(a - mu_a, mode="r"), np.linalg.qr(b - mu_b, mode="r")
    cross = np.linalg.svd(r_a @ r_b.T, compute_uv=False).sum() / np.sqrt(dof_a * dof_b)
    traces = (r_a ** 2).sum() / dof_a + (r_b ** 2).sum() / dof_b   # ‖R‖²_F = ‖A‖²_F = (n−1)·tr Σ
    return float(np.sum((mu_a - mu_b) ** 2) + traces - 2.0 * cross)


@torch.no_grad()
def read_ages_and_features(reader: AgeReader, images: torch.Tensor, device,
                           batch_size: int = 128) -> tuple[torch.Tensor, np.ndarray]:
    """read_ages and reader_features from one pass of the reader's trunk (the same operations, so
    the same numbers: the head reads the pooled features)."""
    reader.eval()
    ages, feats = [], []
    for i in range(0, len(images), batch_size):
        pooled = reader.net.features(images[i:i + batch_size].to(device)).mean(dim=(2, 3))
        ages.append((reader.net.head(pooled).squeeze(1) * reader.age_std + reader.age_mean).float().cpu())
        feats.append(pooled.double().cpu())
    return torch.cat(ages), torch.cat(feats).numpy()


def label_cue_metrics(reader: nn.Module, translated: torch.Tensor, ages: torch.Tensor, device,
                      true_ct: torch.Tensor | None = None, real_ct: torch.Tensor | None = None,
                      real_ct_features: np.ndarray | None = None) -> dict:
    """The reader's MSE (years²) and slope (least squares of its ages on the true ones) on translated
    images; with the same slices rendered as CT (phantom), also the mean absolute pixel error; with
    real CT slices, the *domain FID*: the Fréchet distance between the reader's features of the
    translations and of real CT (FID's formula in a CT reader's feature space: no download needed).
    real_ct_features (reader_features of real_ct) spares recomputing them on every call."""
    if real_ct_features is None and real_ct is not None:
        real_ct_features = reader_features(reader, real_ct, device)
    features = None
    if isinstance(reader, AgeReader) and real_ct_features is not None:
        predicted, features = read_ages_and_features(reader, translated, device)
    else:
        predicted = read_ages(reader, translated, device)
    pred = predicted.double().numpy()
    true = ages.double().numpy()
    centred = true - true.mean()
    slope = float(np.dot(centred, pred - pred.mean()) / max(np.dot(centred, centred), 1e-12))
    out = {"reader_mse": float(np.mean((pred - true) ** 2)), "reader_slope": slope}
    if true_ct is not None:
        out["pixel_l1"] = float((translated - true_ct).abs().mean())
    if real_ct_features is not None:
        if features is None:
            features = reader_features(reader, translated, device)
        out["domain_fid"] = frechet_distance(features, real_ct_features)
    return out


def evenly_spaced(n: int, k: int) -> torch.Tensor:
    """k indices spread over range(n) (all of them when n ≤ k): a fixed probe set."""
    return torch.from_numpy(np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(np.int64)))
