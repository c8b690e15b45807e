"""Runs the UI launched: ``lvmbench run --headless`` children, their state, cancelling them.

Each child runs in a new session with no stdin, its output appended to the run's ``stdout.log``
(the training grandchild appends to the same file), and ``--no-ingest``: the UI alone writes the
database. The children are not tied to the UI: they go on training when it quits, and it finds
them again in the runs folder when it starts. Cancel sends SIGTERM to the child's process group;
the child cancels the training process and records the run as ``cancelled``.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lvmbench import api
from lvmbench.api import DONE, RunDir, list_runs, new_run_id, now

KILL_AFTER_S = 20.0  # the child waits up to 10 s for the training process before it gives up


@dataclass(frozen=True)
class LaunchRequest:
    """What the Launch form asks for; ``sets`` are ``key=value`` overrides."""

    dataset: str = "mnist-lt"
    backbone: str = "tiny-clip"
    method: str = "ce"
    seed: int = 0
    pretrained: str | None = None
    data_root: str | None = None
    sets: tuple[str, ...] = ()
    resume: str | None = None  # continue this killed/failed run instead of starting a new one

    def argv(self, run_id: str, runs_dir: Path, results: Path) -> list[str]:
        if self.resume:
            return [sys.executable, "-m", "lvmbench", "run", "--headless", "--resume", self.resume, "--no-ingest",
                    "--runs-dir", str(runs_dir), "--results", str(results)]
        cmd = [sys.executable, "-m", "lvmbench", "run", "--headless", "--dataset", self.dataset,
               "--backbone", self.backbone, "--method", self.method, "--seed", str(self.seed),
               "--run-id", run_id, "--no-ingest", "--runs-dir", str(runs_dir), "--results", str(results)]
        if self.pretrained:
            cmd += ["--pretrained", self.pretrained]
        if self.data_root:
            cmd += ["--data-root", self.data_root]
        if self.sets:
            cmd += ["--set", *self.sets]
        return cmd


@dataclass
class Job:
    request: LaunchRequest
    run: RunDir
    proc: subprocess.Popen
    launched_at: float
    cancel_sent_at: float | None = None
    ended: bool = False

    @property
    def run_id(self) -> str:
        return self.run.run_id


def start(request: LaunchRequest, runs_dir: Path, results: Path) -> Job:
    """Start ``lvmbench run --headless`` for ``request``; the run directory is created for its log."""
    if request.resume:
        run = RunDir(Path(runs_dir) / request.resume)
    else:
        run = RunDir(Path(runs_dir) / new_run_id(request.dataset, request.method, request.seed))
        run.path.mkdir(parents=True)
    launched = now()
    proc = api.start_process(request.argv(run.run_id, Path(runs_dir).resolve(), Path(results).resolve()),
                         run.log_file, tied=False)
    return Job(request, run, proc, launched)


def cancel(job: Job) -> None:
    """Ask the child's process group to stop (SIGTERM); :func:`enforce_cancel` follows up."""
    if job.proc.poll() is None:
        api.signal_group(job.proc.pid, signal.SIGTERM)
        job.cancel_sent_at = job.cancel_sent_at or time.monotonic()


def enforce_cancel(job: Job, after_s: float = KILL_AFTER_S) -> bool:
    """A child that ignored SIGTERM for ``after_s``: kill it and its training process, record
    ``cancelled``. Returns whether it had to."""
    if job.cancel_sent_at is None or job.proc.poll() is not None or time.monotonic() - job.cancel_sent_at < after_s:
        return False
    api.signal_group(job.proc.pid, signal.SIGKILL)
    status = job.run.status() if job.run.status_file.exists() else {}
    if status.get("pid"):
        api.signal_group(int(status["pid"]), signal.SIGKILL)
    if status:
        api.cancel([job.run], why="cancelled by the user (killed)")
    return True


def state(job: Job) -> tuple[str, str | None]:
    """(status, error) of a launched run, including before its directory holds a run."""
    rc = job.proc.poll()
    status = job.run.status() if job.run.status_file.exists() else None
    if status is None:
        if rc is None:
            return ("cancelling" if job.cancel_sent_at else "starting"), None
        if job.cancel_sent_at:
            return "cancelled", "cancelled before the run started"
        return "failed", last_error(job.run.log_tail(40)) or f"lvmbench run exited with code {rc}"
    name = status.get("status", "queued")
    if name not in DONE and rc is not None:
        return "failed", last_error(job.run.log_tail(40)) or f"lvmbench run exited with code {rc}"
    return name, status.get("error")


def recovered_alive(run: RunDir) -> bool:
    """Whether ``run`` is still queued or running (the UI's refresh records a running run whose process
    vanished ``killed`` first: ``runs.scheduler.recover``, the one explicit step)."""
    status = api.recover(run)
    return status.get("status") not in DONE


def last_error(log: str) -> str | None:
    """The last ``error: …`` line the child printed, without the prefix."""
    for line in reversed(log.splitlines()):
        if line.startswith("error: "):
            return line[len("error: "):].strip()
    return None


def runs_to_ingest(job: Job, runs_dir: Path) -> list[RunDir]:
    """The ended job's run and any run it created on the way (a two-stage method's stage 1); runs that
    failed on bad input (``user_error``) hold no result and stay out, as with ``lvmbench ingest``."""
    def wanted(run: RunDir) -> bool:
        status = run.status()
        return status.get("status") in DONE and not status.get("user_error") and (
            run.run_id == job.run_id or status.get("created_at", 0) >= job.launched_at - 1)

    return [r for r in list_runs(runs_dir) if wanted(r)]
