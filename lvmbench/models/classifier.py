"""Trainable models that sit on the frozen encoder: decoder + classifier, and the stage-2 wrappers."""
from __future__ import annotations

import torch
from torch import nn

from .decoder import Decoder
from .heads import build_head, reset_head


class DecoderClassifier(nn.Module):
    """The study's model: decoder over the token sequence, classifier on token 0."""

    def __init__(self, width: int, num_classes: int, depth: int = 3, heads: int = 4, mlp_ratio: float = 0.5,
                 head_kind: str = "linear", head_scale: float = 30.0, final_norm: bool = False, init: str = "study"):
        super().__init__()
        self.decoder = Decoder(width, depth, heads, mlp_ratio, final_norm, init)
        self.head = build_head(head_kind, width, num_classes, head_scale, init)

    @classmethod
    def from_spec(cls, spec: dict, width: int, num_classes: int) -> "DecoderClassifier":
        # Runs made before decoder.final_norm existed had the norm.
        return cls(width, num_classes, spec["decoder.depth"], spec["decoder.heads"], spec["decoder.mlp_ratio"],
                   spec["head.kind"], spec["head.scale"], spec.get("decoder.final_norm", True),
                   spec.get("decoder.init", "timm"))

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(tokens)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(tokens))


class Stage2Classifier(nn.Module):
    """A frozen stage-1 model plus what stage 2 trains.

    Without an ``adjuster`` the classifier trains again, re-initialised when ``reinit_head`` (cRT, Kang
    et al. 2020: always in the authors' code; in the study's only for ResNets: its ``Crt_Net`` sets an
    unused ``.head`` on its ViT nets, so they retrain the stage-1 classifier). With one (LWS, DisAlign,
    MARC: built by ``lvmbench.methods.stage2``) the stage-1 classifier stays frozen and the adjuster
    trains on its logits.
    """

    def __init__(self, stage1: DecoderClassifier, adjuster: nn.Module | None = None, reinit_head: bool = False):
        super().__init__()
        self.stage1 = stage1.requires_grad_(False)
        self.adjuster = adjuster
        if adjuster is None:  # cRT: the classifier trains again
            if reinit_head:
                reset_head(stage1.head)
            stage1.head.requires_grad_(True)

    def train(self, mode: bool = True):
        super().train(mode)
        self.stage1.decoder.eval()  # frozen: no dropout, no statistics updates
        return self

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            feats = self.stage1.features(tokens)
        logits = self.stage1.head(feats)
        return logits if self.adjuster is None else self.adjuster(feats, logits)
