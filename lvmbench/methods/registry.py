"""The method registry, a leaf: it imports nothing of the methods it registers, and no torch.

As timm's ``_registry.py`` keeps each model's entry point and default config together, one
:func:`register_method` call holds everything the product knows about a method: its builder (a
``"module:function"`` reference, imported only when a run is built, or the function itself), its kind,
loss, sampler and stage, its default settings (overall, per dataset) and its paper. The CLI,
the UI, presets, sweeps, the config profiles and the tables all read :data:`METHODS`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..errors import unknown

KINDS = ("zeroshot", "decoder", "stage2", "linear_probe", "full_finetune", "coop", "peft")


@dataclass(frozen=True)
class MethodInfo:
    """One method: how it trains, where its builder is, what it sets before ``--set``, where it comes from.

    ``defaults`` apply under every recipe (what a recipe decides for the method is in
    ``lvmbench/recipes/<recipe>.toml``), ``dataset_defaults[dataset]`` on one dataset (applied last).
    """

    name: str
    kind: str
    description: str
    builder: str | Callable = ""
    loss: str | None = None
    sampler: str = "instance"  # instance | balanced
    stage: int = 1
    defaults: Mapping[str, Any] = field(default_factory=dict)
    dataset_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    reference: str = ""

    @property
    def summary(self) -> str:
        """The description with its paper, as ``list methods`` and the UI show it."""
        return f"{self.description} ({self.reference})" if self.reference else self.description


METHODS: dict[str, MethodInfo] = {}


def register_method(name: str, kind: str, description: str, **facts: Any) -> MethodInfo:
    """Register a method under ``name`` (once); ``facts`` are :class:`MethodInfo`'s other fields."""
    if name in METHODS:
        raise ValueError(f"method {name} is registered twice")
    if kind not in KINDS:
        raise ValueError(f"method {name}: kind {kind!r} is not one of {', '.join(KINDS)}")
    if facts.get("stage", 1) not in (1, 2):
        raise ValueError(f"method {name}: stage must be 1 or 2")
    METHODS[name] = info = MethodInfo(name, kind, description, **facts)
    return info


def method(name: str) -> MethodInfo:
    """Look a method up by name, with a suggestion when it is unknown."""
    if name not in METHODS:
        raise unknown("method", name, METHODS)
    return METHODS[name]


def resolve(ref: str | Callable) -> Callable:
    """A ``"module:function"`` reference's function, imported now (a function is returned as is)."""
    if callable(ref):
        return ref
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def builder(info: MethodInfo) -> Callable:
    """The method's builder function, imported on first use (the training side only)."""
    return resolve(info.builder)


def names(*kinds: str) -> tuple[str, ...]:
    """The registered methods of the given kinds (every method when none is given), in order."""
    return tuple(m.name for m in METHODS.values() if not kinds or m.kind in kinds)
