"""Runs waiting to be stored because the results database was busy.

DuckDB lets one process write a file, and while any other process holds it open (a notebook's
read-only connection included) nobody can write it. A run that finishes then is kept in its
directory and listed in ``<results>.pending``; the next write to that database stores it too.
"""
from __future__ import annotations

from pathlib import Path

from ..runs.rundir import RunDir


def pending_file(results: Path) -> Path:
    return Path(results).with_name(Path(results).name + ".pending")


def remember(results: Path, runs) -> None:
    """List ``runs`` as waiting for ``results`` (each once)."""
    have = {str(r.path) for r in waiting(results)}
    new = [str(Path(r.path).resolve()) for r in runs if str(Path(r.path).resolve()) not in have]
    if not new:
        return
    try:
        pending_file(results).parent.mkdir(parents=True, exist_ok=True)
        with open(pending_file(results), "a") as f:
            f.writelines(line + "\n" for line in new)
    except OSError:
        pass  # the run directory stays either way: `lvmbench ingest` stores it


def waiting(results: Path) -> list[RunDir]:
    """The runs still waiting for ``results`` whose directories exist."""
    try:
        lines = pending_file(results).read_text().splitlines()
    except OSError:
        return []
    return [RunDir(Path(line)) for line in dict.fromkeys(lines) if line and (Path(line) / "spec.json").exists()]


def clear(results: Path) -> None:
    pending_file(results).unlink(missing_ok=True)
