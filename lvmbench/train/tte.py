"""Test-time ensembling (``eval.tte=true``), as LIFT does it (Shi et al. 2024, shijxcs/LIFT ``trainer.py``).

Each test image is resized to ``size + eval.tte_expand`` (shorter side), cut into the four corner crops and
the centre crop of ``size`` (``fivecrop``, LIFT's default; ``tencrop`` adds their horizontal flips), and
the model's logits over the crops are averaged. Any method can use it: the crops go through the frozen
encoder (no feature cache) or through the model's own tower.
"""
from __future__ import annotations

import torch

CROPS = {"fivecrop": 5, "tencrop": 10}


def tte_transform(size: int, expand: int, mode: str, mean, std):
    """PIL image -> [crops, 3, size, size] tensor, normalised (LIFT's ``transform_test`` with ``tte``)."""
    from torchvision import transforms as T

    crop = T.FiveCrop(size) if mode == "fivecrop" else T.TenCrop(size)
    to_tensor = T.ToTensor()
    return T.Compose([T.Resize(size + expand), crop,
                      T.Lambda(lambda crops: torch.stack([to_tensor(c) for c in crops])), T.Normalize(mean, std)])


def average_logits(logits: torch.Tensor, crops: int) -> torch.Tensor:
    """[N * crops, C] logits of consecutive crops -> [N, C], their mean over each image's crops."""
    return logits.float().view(-1, crops, logits.shape[-1]).mean(dim=1)
