"""A sweep's grid: expand dataset × backbone × pretrained × method × settings × seed into run specs
(planned by :mod:`lvmbench.runs.plan`). Torch-free.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from .. import config
from ..errors import UserError


@dataclass
class Axes:
    """The axes of a grid; ``pretrained`` None means each backbone's default weights."""

    datasets: list[str]
    backbones: list[str]
    methods: list[str]
    seeds: list[int]
    pretrained: list[str | None] = field(default_factory=lambda: [None])
    sets: dict = field(default_factory=dict)
    data_roots: dict[str, str] = field(default_factory=dict)  # dataset -> root ("*" for any)
    variants: list[dict] = field(default_factory=lambda: [{}])  # settings swept as a grid, over ``sets``
    method_sets: dict[str, dict] = field(default_factory=dict)  # a preset's settings of one method, under ``sets``

    def size(self) -> int:
        return (len(self.datasets) * len(self.backbones) * len(self.pretrained) * len(self.methods)
                * len(self.seeds) * len(self.variants))


def expand(axes: Axes) -> list[dict]:
    """Every run spec of the grid, validated (an invalid combination fails before anything runs)."""
    if not axes.size():
        raise UserError("the grid is empty: give at least one dataset, backbone, method and seed")
    specs = []
    for ds, bb, pt, method, variant, seed in itertools.product(axes.datasets, axes.backbones, axes.pretrained,
                                                               axes.methods, axes.variants, axes.seeds):
        root = axes.data_roots.get(ds, axes.data_roots.get("*"))
        specs.append(config.resolve(ds, bb, method, seed=seed, pretrained=pt, data_root=root,
                                    overrides={**axes.method_sets.get(method, {}), **axes.sets, **variant}))
    return specs
