"""Classifiers that read a feature vector: linear, or cosine with a scale (for LDAM, Cao et al. 2019)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CosineHead(nn.Module):
    """logits = scale * cos(feature, w_c)."""

    def __init__(self, dim: int, num_classes: int, scale: float = 30.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.normal_(self.weight, std=0.01)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(x, dim=-1) @ F.normalize(self.weight, dim=-1).t()


def build_head(kind: str, dim: int, num_classes: int, scale: float = 30.0, init: str = "timm") -> nn.Module:
    """A classifier; a linear one is initialised by ``init`` (see ``lvmbench.models.decoder.INITS``)."""
    if kind == "cosine":
        return CosineHead(dim, num_classes, scale)
    from .decoder import INITS

    head = nn.Linear(dim, num_classes)
    INITS[init](head)
    return head


def reset_head(head: nn.Module) -> None:
    """Re-initialise a classifier in place, as a new ``nn.Linear`` is (cRT's fresh classifier: the
    study's ``Crt_Net`` for ResNets and classifier-balancing's ``DotProduct_Classifier`` both build one)."""
    if isinstance(head, CosineHead):
        nn.init.normal_(head.weight, std=0.01)
    else:
        head.reset_parameters()


@torch.no_grad()
def set_head_weights(head: nn.Module, weight: torch.Tensor) -> None:
    """Start a classifier from given class vectors [C, D] (e.g. zero-shot text embeddings), bias 0."""
    head.weight.copy_(weight)
    if getattr(head, "bias", None) is not None:
        head.bias.zero_()
