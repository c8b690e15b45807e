"""Test-time ensembling (``eval.tte=true``), as LIFT does it (Shi et al. 2024, shijxcs/LIFT ``trainer.py``).

Each test image is resized to ``size + eval.tte_expand`` (shorter side), cut into the four corner crops and
the centre crop of ``size`` (``fivecrop``, LIFT's default; ``tencrop`` adds their horizontal flips), and
the model's logits over the crops are averaged. Any method can use it: the crops go through the frozen
encoder (no feature cache) or through the model's own tower.
"""
from __future__ import annotations

import torch

CROPS = {"fivecrop": 5, "tencrop": 10}


class CropsTransform:
    """Image -> [crops, 3, size, size] tensor, normalised (LIFT's ``transform_test`` with ``tte``): the
    image resized (shorter side), cut into crops, each crop made float and normalised. A PIL image, or a
    uint8 tensor with ``decode="torchvision"`` (see :mod:`lvmbench.data.transforms`)."""

    def __init__(self, size: int, expand: int, mode: str, mean, std, decode: str = "pil"):
        from ..data.transforms import ops, to_float

        T = ops(decode)
        self.resize = T.Resize(size + expand)
        self.crop = T.FiveCrop(size) if mode == "fivecrop" else T.TenCrop(size)
        self.tail = T.Compose([*to_float(decode), T.Normalize(mean, std)])

    def __call__(self, image) -> torch.Tensor:
        return torch.stack([self.tail(c) for c in self.crops(image)])

    def crops(self, image) -> list:
        return self.crop(self.resize(image))

    def stacked_crops(self, image: torch.Tensor) -> torch.Tensor:
        """A uint8 image's crops as one uint8 ``[crops, 3, size, size]`` tensor."""
        return torch.stack(self.crops(image))

    def split_float(self):
        """``(uint8 part, float part)`` on the tensor paths (see :func:`lvmbench.data.transforms.split_float`):
        the crops stacked, then each element made float and normalised as :meth:`__call__` does per crop."""
        return self.stacked_crops, self.tail


def average_logits(logits: torch.Tensor, crops: int) -> torch.Tensor:
    """[N * crops, C] logits of consecutive crops -> [N, C], their mean over each image's crops."""
    return logits.float().view(-1, crops, logits.shape[-1]).mean(dim=1)
