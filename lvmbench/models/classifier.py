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

    cRT (Kang et al. 2020) trains only the classifier, re-initialised when ``reinit_head`` (always in the
    authors' code; in the study's only for ResNets: its ``Crt_Net`` sets an unused ``.head`` on its ViT
    nets, so they retrain the stage-1 classifier); LWS, DisAlign and MARC keep the stage-1 classifier
    frozen and train an adjuster of its logits (``lvmbench.methods.stage2``).
    """

    def __init__(self, stage1: DecoderClassifier, method: str, reinit_head: bool = True,
                 confidence_init: str = "torch"):
        super().__init__()
        from ..methods import stage2

        self.stage1 = stage1.requires_grad_(False)
        self.adjuster = None
        num_classes, width = stage1.head.weight.shape
        if method == "crt":
            if reinit_head:
                reset_head(stage1.head)
            stage1.head.requires_grad_(True)
        elif method == "lws":
            self.adjuster = stage2.LWS(num_classes)
        elif method == "disalign":
            self.adjuster = stage2.DisAlign(num_classes, width, confidence_init)
        elif method == "marc":
            self.adjuster = stage2.MARC(stage1.head.weight.detach())
        else:
            raise ValueError(f"{method} is not a two-stage method")

    def train(self, mode: bool = True):
        super().train(mode)
        self.stage1.decoder.eval()  # frozen: no dropout, no statistics updates
        return self

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            feats = self.stage1.features(tokens)
        logits = self.stage1.head(feats)
        return logits if self.adjuster is None else self.adjuster(feats, logits)
