"""The run directory ``runs/<run_id>/``: the only channel from a training process to anyone else.

Every file name of a run directory is spelled here, and ``status.json`` is written only by the
transition methods of :class:`RunDir` below. Who calls each one:

==================  ==========================  =====================================================
transition          status                      called by
==================  ==========================  =====================================================
``create``          → ``queued``                the scheduler (``runs.scheduler.prepare``)
``reopen``          killed/failed/cancelled     the scheduler (``runs.scheduler.start_or_continue``)
                    → ``queued``
``mark_running``    → ``running``               the training child, when it starts a segment (a
                                                fused group's child: of each member it trains)
``mark_finished``   → ``finished``              the training child, when it has evaluated
``mark_failed``     → ``failed``                the training child on an error; the scheduler when
                                                the child exited non-zero without a final status
``mark_killed``     → ``killed``                the scheduler when a signal ended the child;
                                                ``runs.scheduler.recover`` for a run whose process
                                                vanished (its owner died): the one word for that
``mark_cancelled``  → ``cancelled``             the scheduler (``runs.scheduler.cancel``), on Ctrl-C,
                                                SIGTERM, a sweep's abort or the UI's cancel key
``note``            (no change)                 executors adding facts, e.g. a Slurm job id
==================  ==========================  =====================================================

Pure standard library: the UI imports it.
"""
from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from ..errors import UserError

DONE = ("finished", "failed", "killed", "cancelled")  # final statuses: the run's process has ended
ACTIVE = ("queued", "running")
RESUMABLE = ("failed", "killed", "cancelled")
INTERRUPTED = ("killed", "cancelled")  # stopped from outside: a sweep run again continues them

# The files of a run directory, relative to it (RunDir gives their paths).
SPEC, STATUS, METRICS, SYSTEM, LOG = "spec.json", "status.json", "metrics.jsonl", "system.jsonl", "stdout.log"
# Keys of a metrics.jsonl record that time it (when it was written, how long its steps waited for data)
# rather than record what training computed: runs that train bit for bit alike differ in these alone.
TIMESTAMP, LOADER_WAIT = "ts", "loader_wait_s"
TIMING_KEYS = (TIMESTAMP, LOADER_WAIT)


def eval_name(split: str) -> str:
    return f"eval/{split}.json"


def per_class_name(split: str) -> str:
    return f"eval/per_class_{split}.json"


# Files of the runs folder itself (not of one run).
CLAIMS_DIR = ".claims"  # one lock file per config hash a sweep is training: concurrent sweeps share a grid


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


def open_file(path: Path | str) -> BinaryIO:
    """Open a run's file for reading, binary, without ever blocking: a FIFO, a device or a folder in its
    place raises ``OSError`` ("not a regular file (a FIFO)"), as a symlink loop does ("Too many levels
    of symbolic links"), instead of being waited on or followed."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"not a regular file ({_file_kind(mode)})", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _file_kind(mode: int) -> str:
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISDIR: "a folder", stat.S_ISCHR: "a device", stat.S_ISBLK: "a device",
             stat.S_ISSOCK: "a socket"}
    return next((word for test, word in kinds.items() if test(mode)), "not a file")


def read_text(path: Path | str, errors: str = "strict") -> str:
    """A run file's text (UTF-8), read with :func:`open_file`."""
    with open_file(path) as f:
        return f.read().decode("utf-8", errors)


def read_jsonl(path: Path) -> Iterator[dict]:
    """Yield the complete JSON lines of a file being appended to (a torn last line is skipped)."""
    try:
        f = io.TextIOWrapper(open_file(path), encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    with f:
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


def check_id_form(run_id: str, flag: str = "--run-id") -> None:
    """Refuse a run id that is empty or not a plain folder name (no path: the folder is --runs-dir's)."""
    if not run_id.strip():
        raise UserError(f"{flag} is empty: give a run id (see `lvmbench sql \"SELECT run_id FROM runs\"`)")
    if not RUN_ID_RE.fullmatch(run_id):
        raise UserError(f"{flag} {run_id!r}: use letters, digits, '.', '_' and '-' (at most 128)"
                        + ("; a run in another folder: --runs-dir DIR" if flag == "--resume" and "/" in run_id else ""))


def check_run_id(runs_dir: Path, run_id: str) -> None:
    """Refuse a run id that is not a plain folder name or that names an existing run."""
    check_id_form(run_id)
    if RunDir(Path(runs_dir) / run_id).exists():
        raise UserError(f"--run-id {run_id}: a run with this id already exists in {runs_dir}")


class Lock:
    """An exclusive ``flock`` on a file: held while this process (or a child it handed the
    descriptor to) lives, released by the OS when they die. ``acquire`` never waits."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd: int | None = None

    def acquire(self) -> bool:
        if self.fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:  # who holds it, for the message of whoever finds it held
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # a full disk: the lock holds all the same
        self.fd = fd
        return True

    def holder(self) -> int | None:
        """The pid that took the lock last (it, or a child it handed the lock to, holds it while alive)."""
        try:
            with open(self.path, "rb") as f:
                return int(f.read(32).split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def held_elsewhere(self) -> bool:
        """Whether another open of the file (another process, or another Lock here) holds it."""
        if self.fd is not None or not self.path.exists():
            return False
        probe = Lock(self.path)
        if probe.acquire():
            probe.release()
            return False
        return True

    def __enter__(self) -> "Lock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def claim(runs_dir: Path, config_hash: str) -> Lock:
    """The claim of one configuration in a runs folder: the sweep that holds it trains that run."""
    return Lock(Path(runs_dir) / CLAIMS_DIR / f"{config_hash}.lock")


class RunDir:
    """Paths, readers and the status transitions of one run's directory."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.run_id = self.path.name

    spec_file = property(lambda self: self.path / SPEC)
    status_file = property(lambda self: self.path / STATUS)
    metrics_file = property(lambda self: self.path / METRICS)
    system_file = property(lambda self: self.path / SYSTEM)
    log_file = property(lambda self: self.path / LOG)
    eval_dir = property(lambda self: self.path / "eval")
    ckpt_dir = property(lambda self: self.path / "ckpt")
    checkpoint_file = property(lambda self: self.path / "ckpt" / "last.pt")  # to continue training
    model_file = property(lambda self: self.path / "ckpt" / "model.pt")  # the trained model (a stage-2 parent)
    bad_images_file = property(lambda self: self.path / "bad_images.jsonl")
    lock_file = property(lambda self: self.path / ".owner.lock")  # held by the run's live owner
    cancel_file = property(lambda self: self.path / ".cancel")  # someone asked the owner to cancel

    def eval_file(self, split: str) -> Path:
        return self.path / eval_name(split)

    def per_class_file(self, split: str) -> Path:
        return self.path / per_class_name(split)

    def lock(self) -> Lock:
        """The run's owner lock (see :mod:`lvmbench.runs.process`): one live owner at a time."""
        return Lock(self.lock_file)

    # -- reading --------------------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the folder holds a run: a ``spec.json`` of any kind (one that cannot be read, a
        symlink loop or a FIFO included, so that ingest names it as skipped)."""
        return os.path.lexists(self.spec_file)

    def unreadable(self) -> str | None:
        """Why the run's spec.json or status.json cannot be read as a JSON object, or None."""
        for file in (self.spec_file, self.status_file):
            try:
                data = json.loads(read_text(file))
            except FileNotFoundError:
                if file == self.spec_file:
                    return "spec.json is missing"
                continue
            except json.JSONDecodeError as exc:
                return f"{file.name} is not valid JSON ({exc})"
            except UnicodeDecodeError:
                return f"{file.name} is not UTF-8 text"
            except OSError as exc:
                return f"{file.name} cannot be read ({exc.strerror or exc})"
            if not isinstance(data, dict):
                return f"{file.name} is not a JSON object"
        return None

    def spec(self) -> dict:
        return json.loads(read_text(self.spec_file))

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
            status = json.loads(read_text(self.status_file))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            status = None
        return status if isinstance(status, dict) else {"status": "queued", "run_id": self.run_id}

    def state(self) -> str:
        return self.status().get("status", "queued")

    def metrics(self) -> list[dict]:
        return list(read_jsonl(self.metrics_file))

    def system(self) -> list[dict]:
        return list(read_jsonl(self.system_file))

    def skipped_images(self) -> int:
        """How many distinct images ``data.on_bad_image=skip`` has left out (missing or undecodable)."""
        return len({r.get("image") for r in read_jsonl(self.bad_images_file)})

    def evaluation(self, split: str) -> dict | None:
        path = self.eval_file(split)
        return json.loads(read_text(path)) if path.exists() else None

    def per_class(self, split: str) -> list[dict]:
        path = self.per_class_file(split)
        return json.loads(read_text(path)) if path.exists() else []

    def last_step(self) -> int:
        """The last training step the run has logged (cheap: reads the file's tail)."""
        try:
            f = open_file(self.metrics_file)
        except OSError:
            return 0
        with f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = f.read().decode(errors="replace").splitlines()
        for line in reversed(lines):
            try:
                return int(json.loads(line)["step"])
            except (ValueError, KeyError, TypeError):
                continue
        return 0

    def log_tail(self, lines: int = 50) -> str:
        try:
            f = open_file(self.log_file)
        except OSError:
            return ""
        with f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    # -- writing (the training child's records) -------------------------------------------------
    def append(self, file: Path, record: dict) -> None:
        with open(file, "a") as f:
            f.write(json.dumps(record, default=_jsonable) + "\n")

    def write_eval(self, split: str, summary: dict, per_class: list[dict]) -> None:
        atomic_write_json(self.eval_file(split), {"split": split, **summary})
        atomic_write_json(self.per_class_file(split), per_class)

    # -- status transitions (the only writers of status.json) -----------------------------------
    @classmethod
    def create(cls, runs_dir: Path, spec: dict, run_id: str | None = None) -> "RunDir":
        """A new run directory named ``run_id`` (default: a fresh id), status ``queued``; the folder
        may already exist (a launcher may have created it for ``stdout.log``) but must not hold a run."""
        run_id = run_id or new_run_id(spec["dataset"], spec["method"], spec["seed"])
        run = cls(Path(runs_dir) / run_id)
        run.eval_dir.mkdir(parents=True)
        atomic_write_json(run.spec_file, spec)
        run.write_status(status="queued", run_id=run_id, created_at=now())
        return run

    def reopen(self) -> dict:
        """A resumable run is ``queued`` again; its child continues from ``ckpt/last.pt``."""
        self.cancel_file.unlink(missing_ok=True)
        return self.write_status(status="queued", resumed_at=now(), resumes=self.status().get("resumes", 0) + 1,
                           ended_at=None, error=None, user_error=None, log_tail=None)

    def mark_running(self, pid: int, host: str, group_pid: int | None = None) -> dict:
        """The child starts a segment (a run resumed n times has n + 1 segments). ``group_pid``: the
        process whose group holds every process of the run (torchrun's, whose workers each lead a
        session of their own): what a cancel signals."""
        started = now()
        segments = list(self.status().get("segment_starts") or []) + [started]
        return self.write_status(status="running", started_at=started, pid=pid, host=host, segment_starts=segments,
                                 group_pid=group_pid or pid)

    def mark_finished(self, **fields: Any) -> dict:
        return self.write_status(**{"ended_at": now(), **fields, "status": "finished"})

    def mark_failed(self, error: str, user_error: bool = False) -> dict:
        return self.write_status(status="failed", ended_at=now(), error=error, user_error=user_error,
                           log_tail=self.log_tail(50))

    def mark_killed(self, error: str) -> dict:
        return self.write_status(status="killed", ended_at=now(), error=error, log_tail=self.log_tail(50))

    def mark_cancelled(self, error: str = "cancelled by the user") -> dict:
        return self.write_status(status="cancelled", ended_at=now(), error=error, log_tail=self.log_tail(50))

    def note(self, **fields: Any) -> dict:
        """Add facts that change no status (e.g. ``slurm_job_id``)."""
        if "status" in fields:
            raise ValueError("note() changes no status: use a mark_* transition")
        return self.write_status(**fields)

    def write_status(self, **fields: Any) -> dict:
        """Merge ``fields`` into status.json atomically and return the new status. Called only by the
        transitions above (and by test fixtures): ``tests/test_lifecycle.py`` checks that no other
        module of lvmbench or its UI calls it."""
        status = self.status() if self.status_file.exists() else {}
        status.update(fields)
        atomic_write_json(self.status_file, status)
        return status


def _jsonable(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def find_runs(path: Path) -> list[RunDir]:
    """``path`` itself when it is a run directory, else every run directory under it."""
    return [RunDir(path)] if RunDir(path).exists() else list_runs(path)


def list_runs(runs_dir: Path) -> list[RunDir]:
    """Every run directory under ``runs_dir`` (those with a spec), oldest first."""
    if not Path(runs_dir).is_dir():
        return []
    found = [RunDir(p) for p in Path(runs_dir).iterdir() if RunDir(p).exists()]
    return sorted(found, key=_created_at)


def _created_at(run: RunDir) -> float:
    created = run.status().get("created_at")
    return float(created) if isinstance(created, (int, float)) and not isinstance(created, bool) else 0.0
