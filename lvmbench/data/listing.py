"""Remembered verified listings: which listed image files of a split are missing, kept while nothing changed.

A record (``<feature cache>/listings/<key>.json``) is keyed by the data root and the split's sample
paths in order (a split file's content; labels do not decide whether a file exists). It holds each
folder's modification time when it was listed and the positions of the missing samples. A file
added to, removed from or renamed in a folder changes the folder's modification time, so a record
is used for the folders whose time is unchanged: one ``stat`` per folder instead of listing it, and
only the folders that changed are listed again.
A folder modified within ``RACY_S`` seconds before it was listed is recorded as unknown and listed
again next time (a coarse file-system clock could hide a later change in the same tick; git's
"racy index" rule). Remembering is an optimisation: a record that cannot be read or written is ignored.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import paths

RACY_S = 2.0
THREADS = 16
UNKNOWN = -1


def key(split) -> str:
    """The record's name: a hash of the data root and the sample paths in order."""
    h = hashlib.sha256(f"{split.root}\n".encode())
    h.update("\n".join(map(str, split.samples)).encode())
    return h.hexdigest()[:32]


def _mtime_ns(folder: str) -> int:
    try:
        return os.stat(folder or ".").st_mtime_ns
    except OSError:
        return UNKNOWN


def folder_states(folders: list[str]) -> list[int]:
    """Each folder's modification time (ns; ``UNKNOWN`` if it cannot be read), by a pool of threads
    taking the folders in chunks (a local ``stat`` costs less than handing one to a thread)."""
    size = max(1, len(folders) // (4 * THREADS))
    chunks = [folders[i:i + size] for i in range(0, len(folders), size)]
    with ThreadPoolExecutor(max(1, min(THREADS, len(chunks)))) as pool:
        return [t for chunk in pool.map(lambda c: [_mtime_ns(f) for f in c], chunks) for t in chunk]


def _file(name: str):
    return paths.cache_dir() / "listings" / f"{name}.json"


def recall(name: str, states: list[int], n: int) -> tuple[np.ndarray, list[int]]:
    """The remembered missing-file mask of the split named ``name`` (``n`` samples, its folders now in
    ``states``) and the folders to list again (changed since, or never recorded): without a record,
    no sample known missing and every folder."""
    try:
        record = json.loads(_file(name).read_text())
        before, missing = record["mtime_ns"], record["missing"]
        assert record["n"] == n and len(before) == len(states)
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        return np.zeros(n, dtype=bool), list(range(len(states)))
    mask = np.zeros(n, dtype=bool)
    mask[np.asarray(missing, dtype=np.int64)] = True
    return mask, [i for i, (old, now) in enumerate(zip(before, states)) if now == UNKNOWN or old != now]


def remember(name: str, states: list[int], mask: np.ndarray) -> None:
    """Keep ``mask`` for the folders as they were before listing (a folder changed too recently: unknown)."""
    recent = time.time_ns() - int(RACY_S * 1e9)
    record = {"n": len(mask), "mtime_ns": [s if s < recent else UNKNOWN for s in states],
              "missing": np.flatnonzero(mask).tolist()}
    target = _file(name)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, target)
    except OSError:
        pass
