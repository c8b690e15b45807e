"""Default locations of the results database and the run directories."""
from __future__ import annotations

import os
from pathlib import Path


def results_path(explicit: str | None = None) -> Path:
    """``--results``, else ``$LVMBENCH_RESULTS``, else ``./results/results.duckdb``."""
    return Path(explicit or os.environ.get("LVMBENCH_RESULTS") or "results/results.duckdb")


def runs_dir(explicit: str | None = None) -> Path:
    """``--runs-dir``, else ``$LVMBENCH_RUNS``, else ``./runs``."""
    return Path(explicit or os.environ.get("LVMBENCH_RUNS") or "runs")


def cache_dir() -> Path:
    """Where the frozen-encoder feature cache lives (``$LVMBENCH_CACHE`` or ``./.lvmbench-cache``)."""
    return Path(os.environ.get("LVMBENCH_CACHE") or ".lvmbench-cache")
