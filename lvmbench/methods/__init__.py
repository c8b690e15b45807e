"""The method registry: every method reachable by name (CLI, TUI, sweeps, SQL tables alike).

Names and descriptions live in :mod:`lvmbench.catalog` (no torch); losses in :mod:`.losses`;
stage-2 adjusters in :mod:`.stage2`; :func:`build_task` turns a run spec into what the loop trains,
through the builder each method registers by name (:mod:`.registry`).
"""
from __future__ import annotations

from ..catalog import METHODS, MethodInfo, method  # noqa: F401
from . import baselines, lift, stage2  # noqa: F401 - they register their methods
from .losses import LOSSES, build_loss  # noqa: F401
from .registry import BUILDERS, build_task, register_method  # noqa: F401
from .tasks import Task  # noqa: F401
