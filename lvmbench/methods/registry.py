"""One name → builder table of methods, as timm's ``register_model`` / ``create_model``: each method
registers the function that turns a run spec into its :class:`~lvmbench.methods.tasks.Task`, next to
the code it builds (decoder methods in :mod:`.tasks`, stage-2 methods in :mod:`.stage2`, baselines in
:mod:`.baselines`); :func:`build_task` looks the name up. Names, kinds and descriptions stay in
:mod:`lvmbench.catalog` (no torch), so the CLI, the UI and the sweeps list the same methods.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .. import catalog, config
from .losses import build_loss

if TYPE_CHECKING:
    from .tasks import Task


@dataclass
class Build:
    """What a builder gets: the method, the run spec, the frozen backbone, the dataset, the loss the
    spec names (None for a method without one) and the run directory (a stage-2 run's parent is
    its sibling)."""

    info: catalog.MethodInfo
    spec: dict
    backbone: Any
    dataset: Any
    loss: Any
    run_path: Path | None


BUILDERS: dict[str, Callable[[Build], "Task"]] = {}


def register_method(*names: str):
    """Register the decorated function as the builder of each of ``names`` (catalog method names)."""
    def register(fn: Callable[[Build], "Task"]) -> Callable[[Build], "Task"]:
        for name in names:
            if name in BUILDERS:
                raise ValueError(f"method {name} is registered twice")
            if name not in catalog.METHODS:
                raise ValueError(f"method {name} is not in lvmbench.catalog.METHODS")
            BUILDERS[name] = fn
        return fn

    return register


def build_task(spec: dict, backbone, dataset, run_path: Path | None) -> "Task":
    """The :class:`Task` of the spec's method: what the loop feeds, trains and optimises."""
    info = catalog.method(spec["method"])
    recipe = spec.get("recipe", "paper")
    loss = build_loss(spec["loss"], dataset.train_counts, recipe, **config.loss_hparams(spec)) if spec["loss"] else None
    return BUILDERS[info.name](Build(info, spec, backbone, dataset, loss, run_path))
