"""A modality-independent structure term for the translators (beyond the paper, off by default).

The translators erase the phantom's age cues: in G(MRI) the lateral ventricles' slits merge into
one blob and the sulci fade (docs/experiment.md). The cycle loss does not forbid that, since F can
undo a blob as long as G hides enough to invert it. MR→CT synthesis meets the same failure with a
structure constraint between each image and its translation (Yang et al. 2018, "Unpaired brain
MR-to-CT synthesis using a structure-constrained CycleGAN"): the Modality Independent
Neighbourhood Descriptor (MIND, Heinrich et al. 2012) describes each pixel by how much its patch
resembles the patches next to it. T1 MRI and CT give brain tissue different, even reversed,
contrasts, but the same edges in the same places, so MIND(G(y)) ≈ MIND(y) keeps where the
ventricles, sulci and skull are without asking G to copy intensities.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Four neighbours at distance 1 and four at distance 2 (rows, cols): a 2-D search region.
_OFFSETS = ((0, 1), (1, 0), (0, -1), (-1, 0), (0, 2), (2, 0), (0, -2), (-2, 0))
_PAD = 2


def _gaussian_kernel(sigma: float = 0.5, radius: int = 1, device=None) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    g = torch.exp(-t.square() / (2 * sigma * sigma))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, 2 * radius + 1, 2 * radius + 1)


# Added to V: image noise alone (the phantom's CT 4 HU, ~0.1 in window units; MRI ~0.07) gives
# squared differences of 2σ² ≈ 0.01–0.02, which with a tiny eps make MIND a map of the noise.
# At 0.1 the descriptor of an MRI slice is 1.6× closer to its own CT rendering's than to another
# patient's and 1.3× closer than to that rendering blurred by a 5-px box (at 1e-3: 1.12× and 1.05×).
NOISE_FLOOR = 0.1


def mind_descriptor(images: torch.Tensor, eps: float = NOISE_FLOOR) -> torch.Tensor:
    """MIND of single-channel images (N, 1, H, W) → (N, 8, H, W) in (0, 1]: for each neighbour r,
    exp(−D_r / V) with D_r the Gaussian-weighted patch distance to the patch shifted by r and V the
    pixel's mean D over its neighbours (its local variance estimate), normalised so the most similar
    neighbour is 1 (Heinrich et al. 2012, eq. 4). Computed in fp32 whatever the autocast."""
    x = images.float()
    n, c, h, w = x.shape
    padded = F.pad(x, (_PAD,) * 4, mode="replicate")
    kernel = _gaussian_kernel(device=x.device)
    distances = []
    for dy, dx in _OFFSETS:
        shifted = padded[:, :, _PAD + dy:_PAD + dy + h, _PAD + dx:_PAD + dx + w]
        distances.append(F.conv2d(F.pad((x - shifted).square(), (1, 1, 1, 1), mode="replicate"), kernel))
    d = torch.cat(distances, dim=1)
    # eps also keeps flat regions (air, saturated bone) finite: every D there is ~0, MIND ~1 in both images.
    v = d.mean(dim=1, keepdim=True) + eps
    mind = torch.exp(-d / v)
    return mind / mind.amax(dim=1, keepdim=True)


def structure_loss(translated: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Mean |MIND(translated) − MIND(source)| over pixels and neighbours."""
    return (mind_descriptor(translated) - mind_descriptor(source)).abs().mean()
