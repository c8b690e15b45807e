"""Which weights a run names, torch-free: an open_clip pretrained tag, or a checkpoint file.

A checkpoint file enters a run's spec as an absolute path and its config hash by its content
(:func:`file_identity`), never by the name it was typed as: the same file reached by two paths is
one run, and two files reached by one relative path from different folders are two.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
EDGE = 2**20  # the identity hashes the first and the last MiB: enough to tell checkpoints apart, cheap for GBs


def looks_like_path(pretrained: str) -> bool:
    """A ``--pretrained`` value that names a file rather than an open_clip tag."""
    return os.sep in pretrained or pretrained.startswith("~") or pretrained.endswith(CHECKPOINT_SUFFIXES)


def resolve_pretrained(pretrained: str) -> str:
    """A tag as given; a file path made absolute (``~`` expanded), so a spec never depends on the cwd."""
    if not looks_like_path(pretrained):
        return pretrained
    return str(Path(pretrained).expanduser().resolve())


_IDENTITIES: dict[tuple, str] = {}


def file_identity(path: str | Path) -> str | None:
    """``file:<size>:<sha256 of the first and last MiB>`` of a checkpoint file (None when it is not there).

    Cached by (path, size, mtime) within a process: a sweep of many runs reads each file once.
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _IDENTITIES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            h.update(f.read(EDGE))
            if st.st_size > EDGE:
                f.seek(max(EDGE, st.st_size - EDGE))
                h.update(f.read(EDGE))
        _IDENTITIES[key] = f"file:{st.st_size}:{h.hexdigest()[:20]}"
    return _IDENTITIES[key]


def weights_identity(pretrained: str) -> str:
    """What stands for the weights in a config hash: a tag's name, or a file's content identity."""
    if looks_like_path(pretrained):
        return file_identity(pretrained) or f"missing:{pretrained}"
    return f"tag:{pretrained}"
