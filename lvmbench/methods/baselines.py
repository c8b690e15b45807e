"""The study's baselines as ordinary methods: zero-shot CLIP, linear probe, full fine-tuning, CoOp.

Wang et al. 2023 report them in every table; its reference code ships none of them. The classifier
of the linear probe and of full fine-tuning reads CLIP's projected image embedding, normalised (to
norm sqrt(D)), so that a text-initialised head (``head.init=text``) reproduces the zero-shot logits
exactly (zero-shot initialisation as in Wortsman et al. 2022, WiSE-FT).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import config
from ..data.base import few_shot_indices
from ..errors import UserError
from ..models import prompts
from ..models.heads import build_head
from .losses import build_loss
from .task import Build, Task
from .text_head import init_head_from_text, logit_scale

def rms_normalize(x: torch.Tensor) -> torch.Tensor:
    """The embedding rescaled to norm sqrt(D): unit-size coordinates, like the LayerNorm output the decoder's
    classifier reads (a unit-norm input would make a randomly initialised head learn D times slower)."""
    return F.normalize(x, dim=-1) * math.sqrt(x.shape[-1])


class PooledClassifier(nn.Module):
    """``head(rms_normalize(embedding))``; with ``tower`` the model runs the image tower on images itself."""

    def __init__(self, head: nn.Module, tower: nn.Module | None = None):
        super().__init__()
        self.head, self.tower = head, tower

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tower is not None:
            x = self.tower(x)
        return self.head(rms_normalize(x))


class CoopClassifier(nn.Module):
    """CoOp (Zhou et al. 2022): logits = s * cos(image embedding, text(ctx, class name)), the study's Eq. 5.

    In eval mode without gradients the class embeddings are computed once and kept until the next
    ``train()``/``eval()`` call.
    """

    def __init__(self, learner: prompts.PromptLearner, scale: float):
        super().__init__()
        self.prompts, self.scale = learner, scale
        self._cached: torch.Tensor | None = None

    def train(self, mode: bool = True):
        self._cached = None
        return super().train(mode)

    def class_embeddings(self) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            return self.prompts()
        if self._cached is None:
            self._cached = self.prompts()
        return self._cached

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(x.float(), dim=-1) @ self.class_embeddings().t()


def embedding_head(spec: dict, backbone, dataset) -> nn.Module:
    head = build_head(spec["head.kind"], backbone.embed_dim, dataset.num_classes, spec["head.scale"])
    if spec["head.init"] == "text":
        init_head_from_text(head, spec, backbone, dataset, through_projection=False)
    return head


def image_tower(spec: dict, backbone) -> nn.Module:
    """The image tower, unfrozen, optionally with gradient checkpointing (full fine-tuning)."""
    tower = backbone.clip.visual.requires_grad_(True)
    if spec["finetune.grad_checkpointing"]:
        if not backbone.is_vit:
            raise UserError(f"finetune.grad_checkpointing: open_clip supports it for ViT backbones, "
                            f"not {backbone.name}")
        tower.set_grad_checkpointing(True)
    return tower


def coop_task(spec: dict, backbone, dataset, loss, sampler: str) -> Task:
    names = dataset.require_class_names(config.class_names_needed(spec))
    learner = prompts.PromptLearner(backbone.clip, backbone.tokenizer(), names, spec["coop.n_ctx"],
                                    spec["coop.class_chunk"], backbone.name)
    train_split = None
    if spec["coop.shots"]:  # the loss sees the few-shot counts; evaluation keeps the full split's
        train_split = dataset.train.subset(few_shot_indices(dataset.train.labels, spec["coop.shots"], spec["seed"]))
        counts = np.bincount(train_split.labels, minlength=dataset.num_classes)
        loss = build_loss(spec["loss"], counts, **config.loss_hparams(spec))
    return Task(CoopClassifier(learner, logit_scale(backbone)), "pooled", loss, sampler, train_split=train_split)


def zeroshot(b: Build) -> Task:
    head = nn.Linear(b.backbone.embed_dim, b.dataset.num_classes)
    init_head_from_text(head, b.spec, b.backbone, b.dataset, through_projection=False)
    return Task(PooledClassifier(head).requires_grad_(False), "pooled", None)


def linear_probe(b: Build) -> Task:
    return Task(PooledClassifier(embedding_head(b.spec, b.backbone, b.dataset)), "pooled", b.loss, b.info.sampler)


def full_finetune(b: Build) -> Task:
    model = PooledClassifier(embedding_head(b.spec, b.backbone, b.dataset), image_tower(b.spec, b.backbone))
    return Task(model, "images", b.loss, b.info.sampler)


def coop(b: Build) -> Task:
    return coop_task(b.spec, b.backbone, b.dataset, b.loss, b.info.sampler)
