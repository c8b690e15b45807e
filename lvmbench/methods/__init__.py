"""The method registry: every method reachable by name (CLI, TUI, sweeps, SQL tables alike).

Names and descriptions live in :mod:`lvmbench.catalog` (no torch); losses in :mod:`.losses`;
stage-2 adjusters in :mod:`.stage2`; :func:`build_task` turns a run spec into what the loop trains.
"""
from __future__ import annotations

from ..catalog import METHODS, MethodInfo, method  # noqa: F401
from .losses import LOSSES, build_loss  # noqa: F401
from .tasks import Task, build_task  # noqa: F401
