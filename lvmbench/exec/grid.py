"""A sweep's grid: expand dataset × backbone × pretrained × method × settings × seed into run specs
(planned by :mod:`lvmbench.runs.plan`). Torch-free.
"""
from __future__ import annotations

import itertools
import math
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
    swept: dict[str, list] = field(default_factory=dict)  # settings swept as a grid, over ``sets``
    method_sets: dict[str, dict] = field(default_factory=dict)  # a preset's settings of one method, under ``sets``

    def size(self) -> int:
        """How many runs the grid holds, computed without expanding it."""
        return math.prod(map(len, [self.datasets, self.backbones, self.pretrained, self.methods, self.seeds,
                                   *self.swept.values()]))

    def variants(self):
        """Every combination of the swept settings, one at a time."""
        for combo in itertools.product(*self.swept.values()):
            yield dict(zip(self.swept, combo))


MAX_RUNS = 10_000  # the largest grid a sweep plans unless --max-runs raises it


def check_size(axes: Axes, max_runs: int = MAX_RUNS) -> int:
    """Refuse an empty grid, or one larger than ``max_runs``, before it is expanded; return its size."""
    size = axes.size()
    if not size:
        raise UserError("the grid is empty: give at least one dataset, backbone, method and seed")
    if size > max_runs:
        counts = " x ".join(str(len(v)) for v in [axes.datasets, axes.backbones, axes.pretrained, axes.methods,
                                                  axes.seeds, *axes.swept.values()] if len(v) > 1)
        raise UserError(f"the grid holds {size:,} runs ({counts}), more than --max-runs {max_runs:,}; "
                        "narrow it, or raise --max-runs")
    return size


def expand(axes: Axes, max_runs: int = MAX_RUNS) -> list[dict]:
    """Every run spec of the grid, validated (an invalid combination fails before anything runs)."""
    check_size(axes, max_runs)
    specs = []
    for ds, bb, pt, method, variant, seed in itertools.product(axes.datasets, axes.backbones, axes.pretrained,
                                                               axes.methods, list(axes.variants()), axes.seeds):
        root = axes.data_roots.get(ds, axes.data_roots.get("*"))
        specs.append(config.resolve(ds, bb, method, seed=seed, pretrained=pt, data_root=root,
                                    overrides={**axes.method_sets.get(method, {}), **axes.sets, **variant}))
    return specs
