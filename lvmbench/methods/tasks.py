"""Turn a run spec into a :class:`Task`: what the loop feeds, trains and optimises."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .. import catalog, config
from ..data.base import Split
from ..errors import UserError
from ..models.classifier import DecoderClassifier, Stage2Classifier
from .losses import build_loss


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
    extra: dict = field(default_factory=dict)
    train_split: Split | None = None

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]


STAGE1_FILE = "model.pt"


def load_stage1(spec: dict, run_path: Path, width: int, num_classes: int) -> DecoderClassifier:
    """The stage-1 model of a two-stage run, from its run directory's checkpoint."""
    stage1_id = spec["stage1.run_id"]
    if not stage1_id:
        raise UserError(f"method {spec['method']} needs a stage-1 run: --set stage1.run_id=RUN_ID")
    path = run_path.parent / stage1_id / "ckpt" / STAGE1_FILE
    if not path.exists():
        raise UserError(f"stage-1 run {stage1_id} has no model checkpoint ({path})")
    import json

    stage1_spec = json.loads((run_path.parent / stage1_id / "spec.json").read_text())
    model = DecoderClassifier.from_spec(stage1_spec, width, num_classes)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


def crt_reinit(spec: dict, is_vit: bool) -> bool:
    """Whether cRT starts from a fresh classifier: ``crt.reinit=by_backbone`` is the study's rule
    (``Crt_Net`` re-initialises the classifier of its ResNet nets, not of its ViT nets)."""
    return {"always": True, "never": False, "by_backbone": not is_vit}[spec.get("crt.reinit", "always")]


def build_task(spec: dict, backbone, dataset, run_path: Path) -> Task:
    info = catalog.method(spec["method"])
    counts = dataset.train_counts
    recipe = spec.get("recipe", "paper")
    loss = build_loss(spec["loss"], counts, recipe, **config.loss_hparams(spec)) if spec["loss"] else None
    if info.kind == "decoder":
        model = DecoderClassifier.from_spec(spec, backbone.width, dataset.num_classes)
        if spec["head.init"] == "text":
            from .baselines import init_head_from_text

            init_head_from_text(model.head, spec, backbone, dataset, through_projection=True)
        return Task(model, "tokens", loss, info.sampler)
    if info.kind == "stage2":
        stage1 = load_stage1(spec, run_path, backbone.width, dataset.num_classes)
        model = Stage2Classifier(stage1, info.name, crt_reinit(spec, backbone.is_vit),
                                 spec.get("disalign.confidence_init", "torch"))
        return Task(model, "tokens", loss, info.sampler)
    from . import baselines  # zero-shot, linear probe, full fine-tuning, CoOp

    return baselines.build(info, spec, backbone, dataset, loss)
