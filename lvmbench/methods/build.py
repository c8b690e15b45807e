"""Turn a run spec into its :class:`~lvmbench.methods.task.Task`: look the method up in the registry,
build the loss the spec names and call the method's registered builder (as timm's ``create_model``)."""
from __future__ import annotations

from pathlib import Path

from .. import config
from .losses import build_loss
from .registry import builder, method
from .task import Build, Task


def build_task(spec: dict, backbone, dataset, run_path: Path | None) -> Task:
    """The :class:`Task` of the spec's method: what the loop feeds, trains and optimises."""
    info = method(spec["method"])
    recipe = spec.get("recipe", "paper")
    loss = build_loss(spec["loss"], dataset.train_counts, recipe, **config.loss_hparams(spec)) if spec["loss"] else None
    return builder(info)(Build(info, spec, backbone, dataset, loss, run_path))
