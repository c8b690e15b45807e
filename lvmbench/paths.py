"""Locations of the results database and the run directories: defaults, writability, resume hints."""
from __future__ import annotations

import os
import shlex
from pathlib import Path

from .errors import UserError


def results_path(explicit: str | None = None) -> Path:
    """``--results``, else ``$LVMBENCH_RESULTS``, else ``./results/results.duckdb``."""
    return Path(explicit or os.environ.get("LVMBENCH_RESULTS") or "results/results.duckdb")


def runs_dir(explicit: str | None = None) -> Path:
    """``--runs-dir``, else ``$LVMBENCH_RUNS``, else ``./runs``."""
    return Path(explicit or os.environ.get("LVMBENCH_RUNS") or "runs")


def cache_dir() -> Path:
    """Where the frozen-encoder feature cache lives (``$LVMBENCH_CACHE`` or ``./.lvmbench-cache``)."""
    return Path(os.environ.get("LVMBENCH_CACHE") or ".lvmbench-cache")


DEFAULT_RUNS, DEFAULT_RESULTS = Path("runs"), Path("results/results.duckdb")


def check_writable(path: Path, flag: str, folder: bool) -> None:
    """Refuse, before anything is created, a ``flag`` path that cannot be written: a folder
    (``folder=True``) that is a file or sits under one, or a place without write permission (a
    read-only filesystem included). Nothing is created."""
    path = Path(path)
    shown = _shown(path)
    if path.exists():
        if folder and not path.is_dir():
            raise UserError(f"{flag} {shown} is a file, not a folder")
        if not folder and path.is_dir():
            raise UserError(f"{flag} {shown} is a folder, not a file")
        probes = [path] if folder else [path, path.parent]
    else:
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise UserError(f"{flag} {shown}: {_shown(parent)} is a file, not a folder")
        probes = [parent]
    for probe in probes:
        if not os.access(probe, os.W_OK | (os.X_OK if probe.is_dir() else 0)):
            why = "read-only filesystem" if _read_only_fs(probe) else "permission denied"
            raise UserError(f"{flag} {shown}: cannot write to {_shown(probe)} ({why})")


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _shown(path: Path) -> str:
    """A path as text that prints anywhere (bytes that are not UTF-8 as \\x escapes)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def resume_command(run_id: str, runs_dir: Path | str, results: Path | str | None = None) -> str:
    """The command that continues ``run_id``, naming --runs-dir and --results unless they are the defaults."""
    words = ["lvmbench", "run", "--headless", "--resume", run_id]
    if Path(runs_dir) != DEFAULT_RUNS:
        words += ["--runs-dir", str(runs_dir)]
    if results is not None and Path(results) != DEFAULT_RESULTS:
        words += ["--results", str(results)]
    return shlex.join(words)
