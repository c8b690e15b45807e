"""Opening ``results.duckdb`` safely.

DuckDB lets one process hold a file open for writing, and then no other process can open it,
not even read-only. So connections are short-lived, opening retries briefly while another
process holds the file, and then says which process it is. A file that is not a DuckDB
database is refused, never overwritten.
"""
from __future__ import annotations

import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb

from ..errors import UserError
from . import storage
from .schema import ensure_schema

DUCKDB_MAGIC = b"DUCK"
LOCK_RETRY_S = 5.0


def check_is_duckdb(path: Path) -> None:
    """Refuse a file that exists but is not a DuckDB database (an empty file included), or a folder."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a DuckDB database (pass --results with a file path)")
    if path.exists():
        with open(path, "rb") as f:
            head = f.read(12)
        if head[8:12] != DUCKDB_MAGIC:
            raise UserError(f"{path} is not a DuckDB database; refusing to use or overwrite it "
                            "(pass --results with another file)")


def _lock_holder(message: str) -> str:
    found = re.search(r"held in (.+?) \(PID (\d+)\)", message)
    return f"process {found.group(2)} ({found.group(1)})" if found else "another process"


def connect(path: Path | str, read_only: bool = False, retry_s: float | None = None) -> duckdb.DuckDBPyConnection:
    """Open the database, retrying while another process holds it (``retry_s``, default
    ``LOCK_RETRY_S``), then fail with one clear line naming the holder."""
    path = Path(path)
    retry_s = LOCK_RETRY_S if retry_s is None else retry_s
    check_is_duckdb(path)
    if read_only and not path.exists():
        raise UserError(f"no results database at {path} yet: run "
                        "`lvmbench run --headless --dataset mnist-lt --backbone tiny-clip --method ce` first")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + retry_s
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=storage.connect_config())
            break
        except duckdb.Error as exc:
            message = str(exc)
            if "lock" not in message.lower():
                raise UserError(f"cannot open {path}: {message.splitlines()[0]}") from None
            if time.monotonic() >= deadline:
                raise UserError(f"{path} is locked by {_lock_holder(message)}; close it or wait for it "
                                "to finish, then retry") from None
            time.sleep(0.2)
    if not read_only:
        con = _readable_format(con, path)
        ensure_schema(con)
    return con


def _readable_format(con: duckdb.DuckDBPyConnection, path: Path) -> duckdb.DuckDBPyConnection:
    """Migrate a file in DuckDB 2.0's storage format, on its first write, into one DuckDB 1.x reads
    (the original stays next to it as a backup); return a connection to the file in place."""
    if not storage.needs_migration(path):
        return con
    backup = storage.migrate(con, path)
    print(f"note: {path} now uses a storage format DuckDB 1.x reads; the original is kept as {backup}",
          file=sys.stderr)
    return duckdb.connect(str(path), config=storage.connect_config())


@contextmanager
def _connection(path: Path | str, read_only: bool, retry_s: float | None):
    con = connect(path, read_only=read_only, retry_s=retry_s)
    try:
        yield con
    finally:
        con.close()


def open_writer(path: Path | str, retry_s: float | None = None):
    """A short-lived writing connection (the parent process only; never a training child)."""
    return _connection(path, False, retry_s)


def open_readonly(path: Path | str, retry_s: float | None = None):
    """A short-lived read-only connection."""
    return _connection(path, True, retry_s)
