"""Locations of the results database and the run directories: defaults, writability, resume hints."""
from __future__ import annotations

import errno
import os
import shlex
import tempfile
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
    (``folder=True``) that is a file or sits under one, a symlink to nothing or a loop, or a place
    where no file can be made (no permission, a read-only filesystem, a kernel filesystem such as
    /sys or /proc: tried with an anonymous temporary file). Nothing is left behind."""
    path = Path(path)
    shown = _shown(path)
    check_resolvable(path, flag)
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
        if probe.is_dir():
            try:
                tempfile.TemporaryFile(dir=probe).close()
            except OSError as exc:
                raise UserError(f"{flag} {shown}: cannot create files in {_shown(probe)} "
                                f"({exc.strerror or exc})") from None


def check_resolvable(path: Path, flag: str) -> None:
    """Refuse a path that does not resolve: a symlink loop, a symlink to nothing, a folder that
    cannot be searched."""
    path = Path(path)
    while not os.path.lexists(path) and path != path.parent:  # the deepest part that is there
        path = path.parent
    try:
        os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise UserError(f"{flag} {_shown(path)} is a symlink to nothing ({_shown(Path(os.readlink(path)))})") from None
    except NotADirectoryError:
        pass  # under a file: said by the caller
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{flag} {_shown(path)} is a symlink loop") from None
        raise UserError(f"{flag} {_shown(path)}: {exc.strerror or exc}") from None


def check_folder(path: Path, flag: str) -> None:
    """Refuse a ``flag`` folder to read that is missing, a file, or cannot be resolved or listed."""
    check_resolvable(path, flag)
    if not path.exists():
        raise UserError(f"{flag} {_shown(path)}: no such folder")
    if not path.is_dir():
        raise UserError(f"{flag} {_shown(path)} is a file, not a folder")
    try:
        os.scandir(path).close()
    except OSError as exc:
        raise UserError(f"{flag} {_shown(path)}: cannot list it ({exc.strerror or exc})") from None


def device_of(path: Path | str) -> str:
    """The filesystem ``path`` is on, as ``DEVICE (mounted on MOUNT)`` (from /proc/self/mountinfo)."""
    real = os.path.realpath(path)
    best = ("", "")
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                mount, source = fields[4].replace("\\040", " "), fields[fields.index("-") + 2]
                if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best[0]):
                    best = (mount, source)
    except (OSError, ValueError, IndexError):
        pass
    return f"{best[1]} (mounted on {best[0]})" if best[0] else "its device"


def no_space(path: Path | str) -> str:
    """The one line for a write that found its disk full."""
    return f"no space left on {device_of(path)} while writing {_shown(Path(path))}"


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` says a disk was full: ENOSPC, or torch.save's short write ("unexpected pos")."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left on device" in text or "unexpected pos" in text


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
