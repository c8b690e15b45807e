"""The methods: every one reachable by name (CLI, TUI, sweeps, SQL tables alike). Torch-free.

:mod:`.registry` is the leaf table (:func:`register_method`, :data:`METHODS`), :mod:`.entries` registers
the study's and LIFT's methods, :mod:`.loss_params` holds the losses' hyper-parameters as data. The
torch side: :func:`lvmbench.methods.build.build_task` builds a run's task through the method's builder
(:mod:`.decoder`, :mod:`.stage2`, :mod:`.baselines`, :mod:`.lift`), with a loss of :mod:`.losses`.
"""
from __future__ import annotations

from . import entries  # noqa: F401 - registers the study's methods
from .registry import METHODS, MethodInfo, builder, method, names, register_method  # noqa: F401
