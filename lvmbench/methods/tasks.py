"""What the loop trains (:class:`Task`), the decoder methods' builder and the stage-2 methods' helpers."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .. import catalog
from ..data.base import Split
from ..errors import UserError
from ..models.classifier import DecoderClassifier, Stage2Classifier
from ..runs.rundir import RunDir
from .registry import Build, register_method


@dataclass
class Task:
    """``model(inputs) -> logits``, where ``inputs`` is what ``feature`` names for a batch of images.

    feature: ``tokens`` (the frozen encoder's token sequence), ``pooled`` (its projected
    embedding) or ``images`` (the model runs the image tower itself, e.g. full fine-tuning).
    A task with no trainable parameters (zero-shot) is only evaluated. ``train_split``, when set,
    replaces the dataset's training split for training only (CoOp's few-shot subsets).
    """

    model: nn.Module
    feature: str
    loss: nn.Module | None
    sampler: str = "instance"
    train_split: Split | None = None

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]


def load_stage1(spec: dict, run_path: Path, width: int, num_classes: int) -> DecoderClassifier:
    """The stage-1 model of a two-stage run, from its run directory's checkpoint."""
    stage1_id = spec["stage1.run_id"]
    if not stage1_id:
        raise UserError(f"method {spec['method']} needs a stage-1 run: --set stage1.run_id=RUN_ID")
    stage1 = RunDir(run_path.parent / stage1_id)
    path = stage1.model_file
    if not path.exists():
        raise UserError(f"stage-1 run {stage1_id} has no model checkpoint ({path})")
    model = DecoderClassifier.from_spec(stage1.spec(), width, num_classes)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


def crt_reinit(spec: dict, is_vit: bool) -> bool:
    """Whether cRT starts from a fresh classifier: ``crt.reinit=by_backbone`` is the study's rule
    (``Crt_Net`` re-initialises the classifier of its ResNet nets, not of its ViT nets)."""
    return {"always": True, "never": False, "by_backbone": not is_vit}[spec.get("crt.reinit", "always")]


@register_method(*(name for name, m in catalog.METHODS.items() if m.kind == "decoder"))
def decoder_task(b: Build) -> Task:
    """The study's model: a decoder over the frozen tokens and a classifier, trained with the
    method's loss (``lvmbench.methods.losses``)."""
    model = DecoderClassifier.from_spec(b.spec, b.backbone.width, b.dataset.num_classes)
    if b.spec["head.init"] == "text":
        from .baselines import init_head_from_text

        init_head_from_text(model.head, b.spec, b.backbone, b.dataset, through_projection=True)
    return Task(model, "tokens", b.loss, b.info.sampler)


def stage2_task(b: Build, adjuster: Callable[[DecoderClassifier], nn.Module] | None = None,
                reinit_head: bool = False) -> Task:
    """A stage-2 task on the frozen stage-1 model of ``b``'s parent run: ``adjuster(stage1)`` trains on
    its logits, or (none) its classifier trains again, re-initialised when ``reinit_head``."""
    stage1 = load_stage1(b.spec, b.run_path, b.backbone.width, b.dataset.num_classes)
    return Task(Stage2Classifier(stage1, adjuster(stage1) if adjuster else None, reinit_head), "tokens", b.loss,
                b.info.sampler)
