"""The run directory ``runs/<run_id>/``: the only channel from a training process to anyone else.

Written only by the training child (the parent adds a final status when the child died without
one); read by the CLI, the TUI and ingest. Pure standard library: the UI imports it.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any, Iterator

from .errors import UserError

STATUSES = ("queued", "running", "finished", "failed", "killed", "cancelled")
DONE = ("finished", "failed", "killed", "cancelled")


def now() -> float:
    return time.time()


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON to a temporary file, fsync, rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_jsonl(path: Path) -> Iterator[dict]:
    """Yield the complete JSON lines of a file being appended to (a torn last line is skipped)."""
    if not path.exists():
        return
    with open(path) as f:
        for line in f:
            if line.endswith("\n"):
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue


RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def new_run_id(dataset: str, method: str, seed: int) -> str:
    """``<dataset>-<method>-s<seed>-<YYYYmmdd-HHMMSS>-<4 hex>``: unique, sortable, readable."""
    return f"{dataset}-{method}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def check_run_id(runs_dir: Path, run_id: str) -> None:
    """Refuse a run id that is not a plain folder name or that names an existing run."""
    if not RUN_ID_RE.fullmatch(run_id):
        raise UserError(f"--run-id {run_id!r}: use letters, digits, '.', '_' and '-' (at most 128)")
    if (Path(runs_dir) / run_id / "spec.json").exists():
        raise UserError(f"--run-id {run_id}: a run with this id already exists in {runs_dir}")


class RunDir:
    """Paths and readers/writers of one run's directory."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.run_id = self.path.name

    spec_file = property(lambda self: self.path / "spec.json")
    status_file = property(lambda self: self.path / "status.json")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    system_file = property(lambda self: self.path / "system.jsonl")
    log_file = property(lambda self: self.path / "stdout.log")
    eval_dir = property(lambda self: self.path / "eval")
    ckpt_dir = property(lambda self: self.path / "ckpt")
    bad_images_file = property(lambda self: self.path / "bad_images.jsonl")

    @classmethod
    def create(cls, runs_dir: Path, spec: dict, run_id: str | None = None) -> "RunDir":
        """A new run directory named ``run_id`` (default: a fresh id); the folder may already exist
        (a launcher may have created it for ``stdout.log``) but must not hold a run yet."""
        run_id = run_id or new_run_id(spec["dataset"], spec["method"], spec["seed"])
        run = cls(Path(runs_dir) / run_id)
        run.eval_dir.mkdir(parents=True)
        atomic_write_json(run.spec_file, spec)
        run.write_status(status="queued", run_id=run_id, created_at=now())
        return run

    def exists(self) -> bool:
        return self.spec_file.exists()

    def spec(self) -> dict:
        return json.loads(self.spec_file.read_text())

    def spec_or_none(self) -> dict | None:
        """The spec, or None when spec.json is missing or not a JSON object (a scan skips such a folder)."""
        try:
            spec = self.spec()
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return spec if isinstance(spec, dict) else None

    def status(self) -> dict:
        """The run's status; ``queued`` while status.json is missing, unreadable, empty or not a JSON object."""
        try:
            status = json.loads(self.status_file.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            status = None
        return status if isinstance(status, dict) else {"status": "queued", "run_id": self.run_id}

    def write_status(self, **fields: Any) -> dict:
        """Merge ``fields`` into status.json atomically and return the new status."""
        status = self.status() if self.status_file.exists() else {}
        status.update(fields)
        atomic_write_json(self.status_file, status)
        return status

    def append(self, file: Path, record: dict) -> None:
        with open(file, "a") as f:
            f.write(json.dumps(record, default=_jsonable) + "\n")

    def metrics(self) -> list[dict]:
        return list(read_jsonl(self.metrics_file))

    def system(self) -> list[dict]:
        return list(read_jsonl(self.system_file))

    def skipped_images(self) -> int:
        """How many distinct images ``data.on_bad_image=skip`` has left out (missing or undecodable)."""
        return len({r.get("image") for r in read_jsonl(self.bad_images_file)})

    def evaluation(self, split: str) -> dict | None:
        path = self.eval_dir / f"{split}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def per_class(self, split: str) -> list[dict]:
        path = self.eval_dir / f"per_class_{split}.json"
        return json.loads(path.read_text()) if path.exists() else []

    def log_tail(self, lines: int = 50) -> str:
        if not self.log_file.exists():
            return ""
        with open(self.log_file, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _jsonable(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def find_runs(path: Path) -> list[RunDir]:
    """``path`` itself when it is a run directory, else every run directory under it."""
    return [RunDir(path)] if (Path(path) / "spec.json").exists() else list_runs(path)


def list_runs(runs_dir: Path) -> list[RunDir]:
    """Every run directory under ``runs_dir`` (those with a spec), oldest first."""
    if not Path(runs_dir).is_dir():
        return []
    found = [RunDir(p) for p in Path(runs_dir).iterdir() if (p / "spec.json").exists()]
    return sorted(found, key=_created_at)


def _created_at(run: RunDir) -> float:
    created = run.status().get("created_at")
    return float(created) if isinstance(created, (int, float)) and not isinstance(created, bool) else 0.0
