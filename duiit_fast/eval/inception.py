"""Inception score and FID of translated slices against real CT (the paper's Table 5), computed by
torchmetrics (`FrechetInceptionDistance`, `InceptionScore`).

No network at run time: the Inception v3 weights come from a local file the user names
(`fid_weights`). Two kinds are accepted, told apart by the classifier's width:

- **TF-Inception** (1008 classes): torch-fidelity's port of the 2015 TensorFlow graph,
  `pt_inception-2015-12-05-6726825d.pth` — the network of the standard FID (pytorch-fid,
  torch-fidelity, torchmetrics' defaults), so values compare with published FIDs.
- **torchvision's ImageNet Inception v3** (1000 classes), `inception_v3_google-0cc3c7bd.pth`:
  values compare with other torchvision-Inception FIDs only.

Either way a slice in [-1, 1] becomes the 8-bit greyscale image it would be saved as, repeated to
RGB, and each network resizes it to 299² its own way (torch-fidelity: TF1's bilinear). FID uses the
2048-d pool features (the Fréchet distance of `label_cues.frechet_distance`, equal to torchmetrics'
FrechetInceptionDistance and cheaper for a few hundred slices); IS the class softmax (TF-Inception:
its unbiased logits, as torch-fidelity).
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import DuiitConfigError
from .label_cues import frechet_distance

INPUT_SIZE = 299
IS_SPLITS = 10
TF_CLASSES, TORCHVISION_CLASSES = 1008, 1000


class TorchvisionInception(nn.Module):
    """torchvision's Inception v3 as a torchmetrics feature extractor: uint8 (N, 3, H, W) in,
    pool features (`output="pool"`, 2048-d) or class logits (`output="logits"`) out."""

    def __init__(self, net: nn.Module, output: str):
        super().__init__()
        self.net, self.output = net, output
        self.num_features = 2048 if output == "pool" else TORCHVISION_CLASSES

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Google's Inception takes [-1, 1] (torchvision's transform_input=False path).
        x = images.float() / 127.5 - 1.0
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        pooled = {}
        hook = self.net.avgpool.register_forward_hook(lambda m, i, out: pooled.__setitem__("x", out.flatten(1)))
        try:
            logits = self.net(x)
        finally:
            hook.remove()
        return pooled["x"] if self.output == "pool" else logits


class LogProbabilities(nn.Module):
    """A class head's log-probabilities in float64, floored at -100, as InceptionScore's "logits".
    torchmetrics takes softmax(features) (= the probabilities again) and log of their mean per
    split; a class that underflows to 0 in every slice of a split gives 0 · log 0 = NaN there. The
    floor changes no probability by more than e^-100."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.net(images).double(), dim=1).clamp_min(-100.0)


class InceptionNets:
    """The two feature extractors of one weights file: `fid` (pool features) and `score` (logits)."""

    def __init__(self, kind: str, fid: nn.Module, score: nn.Module):
        self.kind, self.fid, self.score = kind, fid, LogProbabilities(score)


def _read_state(path: Path) -> dict:
    if not path.is_file():
        raise DuiitConfigError(f"fid_weights {path}: no such file (IS/FID need Inception v3 weights as a local "
                               "file: torch-fidelity's pt_inception-2015-12-05-6726825d.pth or torchvision's "
                               "inception_v3_google-0cc3c7bd.pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)   # tensors only: never executes code
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same one-line error
        raise DuiitConfigError(f"fid_weights {path}: not a readable weights file ({type(exc).__name__})") from None
    if not isinstance(state, dict) or not isinstance(state.get("fc.weight"), torch.Tensor):
        raise DuiitConfigError(f"fid_weights {path}: not Inception v3 weights (no fc.weight tensor in a state dict)")
    return {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}   # the auxiliary head is unused


def _first_line(exc: Exception) -> str:
    lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
    return (lines[1] if len(lines) > 1 else lines[0] if lines else type(exc).__name__)[:120]


def _tf_inception(state: dict, path: Path, device) -> InceptionNets:
    from torchmetrics.image.fid import NoTrainInceptionV3
    # torch-fidelity loads its file with torch.load(weights_only=False), which can execute code. It gets
    # a copy this process wrote from the tensors-only load above, never the user's file itself.
    with tempfile.TemporaryDirectory() as tmp:
        safe = Path(tmp) / "inception.pth"
        torch.save(state, safe)
        try:
            nets = [NoTrainInceptionV3(name="inception-v3-compat", features_list=[feature],
                                       feature_extractor_weights_path=str(safe))
                    for feature in ("2048", "logits_unbiased")]
        except RuntimeError as exc:
            raise DuiitConfigError(f"fid_weights {path}: not TF-Inception weights ({_first_line(exc)})") from None
    return InceptionNets("tf-inception", *(n.to(device) for n in nets))


def _torchvision_inception(state: dict, path: Path, device) -> InceptionNets:
    import torchvision
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise DuiitConfigError(f"fid_weights {path}: not torchvision's Inception v3 weights "
                               f"({_first_line(exc)})") from None
    net = net.eval().requires_grad_(False).to(device)
    return InceptionNets("torchvision", TorchvisionInception(net, "pool"), TorchvisionInception(net, "logits"))


def load_inception(weights_path, device="cpu") -> InceptionNets:
    """The Inception v3 of a local weights file, TF-Inception or torchvision's, in eval mode; a
    missing, unreadable or foreign file is one line naming it."""
    path = Path(weights_path)
    state = _read_state(path)
    classes = state["fc.weight"].shape[0]
    if classes == TF_CLASSES:
        return _tf_inception(state, path, device)
    if classes == TORCHVISION_CLASSES:
        return _torchvision_inception(state, path, device)
    raise DuiitConfigError(f"fid_weights {path}: an Inception head of {classes} classes; expected {TF_CLASSES} "
                           f"(TF-Inception) or {TORCHVISION_CLASSES} (torchvision)")


def to_uint8_rgb(slices: torch.Tensor) -> torch.Tensor:
    """(N, 1, S, S) slices in [-1, 1] → (N, 3, S, S) uint8: the 8-bit image a slice is saved as."""
    return ((slices.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).repeat(1, 3, 1, 1)


@torch.no_grad()
def inception_metrics(nets: InceptionNets, translated: torch.Tensor, real_ct: torch.Tensor, device="cpu",
                      batch_size: int = 32) -> dict:
    """IS of the translations (torchmetrics' InceptionScore: mean and std over up to 10 splits) and
    their FID against real CT (FID's formula on the pool features, `frechet_distance`)."""
    from torchmetrics.image.inception import InceptionScore
    with warnings.catch_warnings():   # "saves all features in a buffer": a few hundred slices here
        warnings.simplefilter("ignore", UserWarning)
        score = InceptionScore(feature=nets.score, splits=max(1, min(IS_SPLITS, len(translated) // 2))).to(device)
    features = {}
    for name, images in (("real", real_ct), ("translated", translated)):
        parts = []
        for i in range(0, len(images), batch_size):
            batch = to_uint8_rgb(images[i:i + batch_size]).to(device)
            parts.append(nets.fid(batch).double().cpu())
            if name == "translated":
                score.update(batch)
        features[name] = torch.cat(parts).numpy()
    # InceptionScore shuffles its features with the global RNG: keep the training stream untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        score_mean, score_std = score.compute()
    return {"inception_score": float(score_mean), "inception_score_std": float(score_std),
            "inception_fid": frechet_distance(features["translated"], features["real"]),
            "inception_kind": nets.kind}
