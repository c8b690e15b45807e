"""What a stored run was built from, and what of its files ingest still has to read.

A run's state is the size, modification time and inode of each file ingest reads. A run whose
state did not change since it was stored is skipped. A JSONL log of a run that was running when
it was stored is read from where the last ingest stopped, provided the file only grew since (same
inode, the bytes before that point unchanged); any other change re-reads the whole file.
"""
from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass

from ..runs.rundir import METRICS, SPEC, STATUS, SYSTEM, RunDir, eval_name, open_file, per_class_name

EVAL_SPLITS = ("val", "test")
TRACKED = (SPEC, STATUS, METRICS, SYSTEM, *map(eval_name, EVAL_SPLITS), *map(per_class_name, EVAL_SPLITS))
LOGS = {"metrics": METRICS, "system": SYSTEM}  # table -> the log it is read from
LIVE = ("queued", "running")  # a run in these states may still append to its logs
CHECK_BYTES = 4096  # the bytes before the last read position that must be unchanged to append


def file_states(run: RunDir) -> dict[str, list[int]]:
    """``{file: [size, mtime_ns, inode]}`` for each file of ``run`` that ingest reads and that exists."""
    states, folder = {}, str(run.path)
    for name in TRACKED:
        try:
            st = os.stat(f"{folder}/{name}")
        except (FileNotFoundError, NotADirectoryError):
            if os.path.islink(f"{folder}/{name}"):
                raise OSError(errno.ENOENT, "a dangling symlink", f"{folder}/{name}") from None
            continue
        if not stat.S_ISREG(st.st_mode):  # never read (a FIFO would block): the run is skipped, named
            with open_file(f"{folder}/{name}"):
                pass
        states[name] = [st.st_size, st.st_mtime_ns, st.st_ino]
    return states


def unchanged(stored: dict | None, states: dict) -> bool:
    """Whether ``run_sources.files`` of a stored run describes exactly these file states."""
    return stored is not None and {name: f["state"] for name, f in stored["files"].items()} == states


@dataclass
class LogChunk:
    """The complete lines of a log that ingest has not stored yet."""

    text: str
    replace: bool  # True: these lines replace the run's stored rows; False: they follow them
    read_to: int  # the byte after the last complete line
    check: str  # digest of the CHECK_BYTES before read_to
    torn: int  # bytes after the last complete line (a line being written, or a truncated file)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def read_log(path, stored: dict | None, state: list[int] | None, appendable: bool) -> LogChunk:
    """The new complete lines of the log at ``path``: after ``stored['read_to']`` when ``appendable``
    and the file only grew since, else all of them."""
    if state is None:
        return LogChunk("", True, 0, "", 0)
    with open_file(path) as f:
        begin = 0
        if appendable and stored and stored["state"][2] == state[2] and state[0] >= stored["read_to"]:
            begin = max(0, stored["read_to"] - CHECK_BYTES)
            f.seek(begin)
            data = f.read()
            kept = stored["read_to"] - begin
            if len(data) >= kept and _digest(data[:kept]) == stored["check"]:
                return _chunk(data, begin, start=kept, replace=False)
            f.seek(0)
            begin = 0
        return _chunk(f.read(), 0, start=0, replace=True)


def _chunk(data: bytes, begin: int, start: int, replace: bool) -> LogChunk:
    """``data`` holds the file's bytes from offset ``begin``; its new lines start at ``start``."""
    end = data.rfind(b"\n") + 1
    end = max(end, start)
    text = data[start:end].decode("utf-8", errors="replace")
    return LogChunk(text, replace, begin + end, _digest(data[max(0, end - CHECK_BYTES):end]), len(data) - end)


def entry(state: list[int], chunk: LogChunk | None = None) -> dict:
    """One file's record in ``run_sources.files``."""
    out = {"state": state}
    if chunk is not None:
        out.update(read_to=chunk.read_to, check=chunk.check)
    return out
