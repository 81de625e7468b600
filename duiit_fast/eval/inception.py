"""Inception score and FID of translated slices against real CT (the paper's Table 5).

No network at run time: the Inception v3 weights come from a local file the user names
(`fid_weights`): torchvision's ImageNet state dict (`inception_v3_google-0cc3c7bd.pth`, as
`torchvision.models.Inception_V3_Weights.IMAGENET1K_V1` downloads it). FID uses the 2048-d pool
features, IS the 1000-way softmax. Values are comparable with other torchvision-Inception FIDs, not
exactly with TF-Inception FIDs (pytorch-fid / torch-fidelity use the 2015 TF graph's weights).
Slices in [-1, 1] are what Google's Inception expects after its own input scaling, so they go in
as they are, repeated to 3 channels and resized to 299² (bilinear).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DuiitConfigError
from .label_cues import frechet_distance

INPUT_SIZE = 299
IS_SPLITS = 10


def load_inception(weights_path, device="cpu"):
    """torchvision's Inception v3 with the weights of a local file, in eval mode; a missing or
    foreign file is one line naming it."""
    import torchvision
    path = Path(weights_path)
    if not path.is_file():
        raise DuiitConfigError(f"fid_weights {path}: no such file (IS/FID need torchvision's Inception v3 "
                               "ImageNet weights, inception_v3_google-0cc3c7bd.pth, as a local file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)   # tensors only: never executes code
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same one-line error
        raise DuiitConfigError(f"fid_weights {path}: not a readable weights file ({type(exc).__name__})") from None
    model = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    if not isinstance(state, dict):
        raise DuiitConfigError(f"fid_weights {path}: not a state dict")
    state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}   # the auxiliary head is unused
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise DuiitConfigError(f"fid_weights {path}: not torchvision's Inception v3 weights ({first[:120]})") from None
    return model.eval().to(device)


@torch.no_grad()
def inception_outputs(model, images: torch.Tensor, device="cpu", batch_size: int = 32):
    """(pool features (N, 2048), softmax probabilities (N, 1000)) for (N, 1, S, S) slices in [-1, 1]."""
    pooled = {}
    hook = model.avgpool.register_forward_hook(lambda m, i, out: pooled.__setitem__("x", out.flatten(1)))
    feats, probs = [], []
    try:
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].to(device).float().repeat(1, 3, 1, 1)
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
            logits = model(x)
            feats.append(pooled["x"].double().cpu())
            probs.append(torch.softmax(logits.double(), dim=1).cpu())
    finally:
        hook.remove()
    return torch.cat(feats).numpy(), torch.cat(probs).numpy()


def inception_score(probs: np.ndarray, splits: int = IS_SPLITS) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) ‖ p(y))), mean and std over `splits` parts (Salimans et al., 2016)."""
    splits = max(1, min(splits, len(probs) // 2))
    scores = []
    for part in np.array_split(probs, splits):
        marginal = part.mean(0, keepdims=True)
        kl = (part * (np.log(part + 1e-12) - np.log(marginal + 1e-12))).sum(1).mean()
        scores.append(float(np.exp(kl)))
    return float(np.mean(scores)), float(np.std(scores))


def inception_metrics(model, translated: torch.Tensor, real_ct: torch.Tensor, device="cpu") -> dict:
    """IS of the translations and FID between them and real CT."""
    fake_feats, fake_probs = inception_outputs(model, translated, device)
    real_feats, _ = inception_outputs(model, real_ct, device)
    score, score_std = inception_score(fake_probs)
    return {"inception_score": score, "inception_score_std": score_std,
            "inception_fid": frechet_distance(fake_feats, real_feats)}
