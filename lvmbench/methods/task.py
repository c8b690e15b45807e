"""What a method's builder gets (:class:`Build`) and returns (:class:`Task`, what the loop trains)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..data.base import Split
from .registry import MethodInfo


@dataclass
class Build:
    """What a builder gets: the method, the run spec, the frozen backbone, the dataset, the loss the
    spec names (None for a method without one) and the run directory (a stage-2 run's parent is
    its sibling)."""

    info: MethodInfo
    spec: dict
    backbone: Any
    dataset: Any
    loss: Any
    run_path: Path | None


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
