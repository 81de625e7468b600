"""The paper's augmentation baselines (Table 4): CT only, with torchvision's own transforms.

AUG-SIMPLE: flips, small rotations and random resized crops; AUG-AUTO: AutoAugment (ImageNet
policy); AUG-ERASING: RandomErasing. Images are 1-channel tensors in [-1, 1]; AutoAugment's
colour operations (posterize, solarize, equalize) need uint8, so it runs on the image mapped to
0–255 and back. Each slice gets its own random parameters (a v2 transform called on a batch would
draw one set for the whole batch). Randomness comes from torch's global generator, which the
checkpoint saves, so a resumed run augments exactly as an uninterrupted one.
"""
from __future__ import annotations

import torch



class _OnUint8:
    """Run a uint8-only transform on a [-1, 1] float image."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        as_uint8 = ((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return self.transform(as_uint8).float() / 127.5 - 1.0


def simple(size: int):
    """Flips, rotations of up to 10° (air filled in) and random resized crops of 80–100 %."""
    from torchvision.transforms import v2
    return v2.Compose([v2.RandomHorizontalFlip(), v2.RandomRotation(10, fill=-1.0),
                       v2.RandomResizedCrop(size, scale=(0.8, 1.0), antialias=True)])


def auto(size: int):
    """AutoAugment's ImageNet policy."""
    from torchvision.transforms import v2
    return _OnUint8(v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET))


def erasing(size: int):
    """RandomErasing with torchvision's defaults: p 0.5, scale 2–33 %, value 0."""
    from torchvision.transforms import v2
    return v2.RandomErasing(p=0.5, value=0)


# Each AUG-* setting's per-slice transform, (1, S, S) → (1, S, S), built for side S.
AUGMENTATIONS = {"AUG-SIMPLE": simple, "AUG-AUTO": auto, "AUG-ERASING": erasing}


def paper_augmentation(setting: str, size: int):
    """The per-slice transform of an AUG-* setting."""
    if setting not in AUGMENTATIONS:
        raise ValueError(f"not an augmentation setting: {setting!r} (one of {tuple(AUGMENTATIONS)})")
    return AUGMENTATIONS[setting](size)


def augment_batch(transform, images: torch.Tensor) -> torch.Tensor:
    """(N, 1, S, S) on any device: every slice through `transform` with its own parameters."""
    out = torch.stack([transform(img) for img in images.cpu()])
    return out.to(images.device)
