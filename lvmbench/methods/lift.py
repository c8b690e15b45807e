"""LIFT's recipe (Shi et al., "Long-Tail Learning with Foundation Model: Heavy Fine-Tuning Hurts", ICML 2024):
a frozen CLIP image tower with a parameter-efficient method inside it (:mod:`lvmbench.models.peft`) and a
cosine classifier started from the class names' text features, trained with the logit-adjusted loss.

The classifier reads LIFT's feature (the class token after ``ln_post``, before CLIP's projection), so a
ViT's text features are mapped through the projection, ``normalize(t P^T)``, as LIFT's
``init_head_text_feat`` does; a ResNet's classifier reads the projected embedding and takes ``t`` itself.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.heads import build_head, set_head_weights
from ..models.peft import peft_tower
from .task import Build, Task
from .text_head import projection, zero_shot_weights


class PeftClassifier(nn.Module):
    """``head(tower(images))``: the tuned image tower runs inside the model, as in full fine-tuning."""

    def __init__(self, tower: nn.Module, head: nn.Module):
        super().__init__()
        self.tower, self.head = tower, head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.tower(images))


def text_head_weights(spec: dict, backbone, dataset) -> torch.Tensor:
    """LIFT's text initialisation of a classifier on the tower's feature [C, width or embed_dim]."""
    weight = zero_shot_weights(spec, backbone, dataset)
    if backbone.is_vit:
        weight = F.normalize(weight @ projection(backbone).float().t(), dim=-1)
    return weight


def peft_task(b: Build) -> Task:
    """The method's PEFT modules in the image tower, LIFT's text-initialised classifier on its feature."""
    spec, backbone, dataset = b.spec, b.backbone, b.dataset
    tower = peft_tower(backbone.clip.visual, b.info.name, dataset.num_classes, is_vit=backbone.is_vit,
                       name=backbone.name, bottleneck=spec["peft.bottleneck"] or None, vpt_len=spec["peft.vpt_len"])
    head = build_head(spec["head.kind"], tower.width, dataset.num_classes, spec["head.scale"])
    if spec["head.init"] == "text":
        set_head_weights(head, text_head_weights(spec, backbone, dataset))
    return Task(PeftClassifier(tower, head), "images", b.loss, b.info.sampler)
