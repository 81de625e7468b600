"""CycleGAN's image pool (Shrivastava et al. 2017): discriminators see a history of fakes."""
from __future__ import annotations

import torch


class ImagePool:
    """Holds up to `size` generated images. Each queried image is returned as is while the pool
    fills; afterwards, with probability 1/2 a random stored image is returned instead and the new
    one takes its place. Randomness comes from a torch Generator (seedable, checkpointable)."""

    def __init__(self, size: int = 50, generator: torch.Generator | None = None):
        self.size = size
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand(1, generator=self.generator).item() > 0.5:
                idx = int(torch.randint(len(self.images), (1,), generator=self.generator))
                out.append(self.images[idx].clone())
                self.images[idx] = image.clone()
            else:
                out.append(image)
        return torch.cat(out)

    def state_dict(self) -> dict:
        return {"images": [img.cpu() for img in self.images]}

    def load_state_dict(self, state: dict, device=None) -> None:
        self.images = [img.to(device) if device is not None else img for img in state["images"]]
