"""Opening ``results.duckdb`` safely.

DuckDB lets one process hold a file open for writing, and then no other process can open it,
not even read-only. So connections are short-lived, opening retries briefly while another
process holds the file, and then says which process it is. A file that is not a DuckDB
database is refused, never overwritten. Any DuckDB error that leaves a connection's block (a
damaged file, a full disk) comes out as one :class:`StoreError` line naming the database.
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
DAMAGED_HINTS = ("could not read enough bytes", "corrupt", "checksum", "invalid database", "not a valid duckdb")


class StoreError(UserError):
    """The results database failed under a command (damaged file, full disk, …): one line, exit 1."""

    exit_code = 1


def store_error(path: Path, exc: BaseException) -> StoreError:
    """One line naming the database and DuckDB's own first line (the cause, never a follow-up)."""
    text = str(exc).strip().splitlines()
    message = f"results database {path}: {text[0] if text else type(exc).__name__}"
    if any(h in message.lower() for h in DAMAGED_HINTS):
        message += (" (the file looks damaged or truncated; the run directories can rebuild it: "
                    "lvmbench ingest --results NEW_FILE)")
    return StoreError(message)


def check_utf8_path(path: Path) -> None:
    """DuckDB opens only file names that are valid UTF-8 (it crashes on others)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise UserError(f"{shown}: DuckDB needs a UTF-8 file name; rename it or pass --results "
                        "with another path") from None


def check_is_duckdb(path: Path) -> None:
    """Refuse a file that exists but is not a DuckDB database (an empty file included), or a folder."""
    path = Path(path)
    check_utf8_path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a DuckDB database (pass --results with a file path)")
    if path.exists():
        try:
            with open(path, "rb") as f:
                head = f.read(12)
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
        if head[8:12] != DUCKDB_MAGIC:
            raise UserError(f"{path} is not a DuckDB database; refusing to use or overwrite it "
                            "(pass --results with another file)")


def _lock_holder(message: str) -> str:
    found = re.search(r"held in (.+?) \(PID (\d+)\)", message)
    return f"process {found.group(2)} ({found.group(1)})" if found else "another process"


def connect(path: Path | str, read_only: bool = False, retry_s: float | None = None,
            config: dict | None = None) -> duckdb.DuckDBPyConnection:
    """Open the database, retrying while another process holds it (``retry_s``, default
    ``LOCK_RETRY_S``), then fail with one clear line naming the holder. ``config``: DuckDB settings
    of the connection (the SQL console's are locked down)."""
    path = Path(path)
    retry_s = LOCK_RETRY_S if retry_s is None else retry_s
    check_is_duckdb(path)
    if read_only and not path.exists():
        raise UserError(f"no results database at {path} yet: run "
                        "`lvmbench run --headless --dataset mnist-lt --backbone tiny-clip --method ce` first")
    if not read_only:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the results database {path}: {exc.strerror or exc}") from None
    deadline = time.monotonic() + retry_s
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config={**storage.connect_config(), **(config or {})})
            break
        except duckdb.Error as exc:
            message = str(exc)
            if "lock" not in message.lower():
                raise store_error(path, exc) from None
            if time.monotonic() >= deadline:
                raise UserError(f"{path} is locked by {_lock_holder(message)}; close it or wait for it "
                                "to finish, then retry") from None
            time.sleep(0.2)
    if not read_only:
        try:
            con = _readable_format(con, path)
            ensure_schema(con)
        except duckdb.Error as exc:
            _close_quietly(con)
            raise store_error(path, exc) from exc
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
def _connection(path: Path | str, read_only: bool, retry_s: float | None, config: dict | None = None):
    con = connect(path, read_only=read_only, retry_s=retry_s, config=config)
    try:
        yield con
    except BaseException as exc:
        _close_quietly(con)  # the error in flight is the cause: never hide it behind a failed close
        if isinstance(exc, duckdb.Error):
            raise store_error(Path(path), exc) from exc
        raise
    try:
        con.close()
    except duckdb.Error as exc:  # e.g. the final checkpoint on a full disk
        raise store_error(Path(path), exc) from exc


def _close_quietly(con) -> None:
    try:
        con.close()
    except duckdb.Error:
        pass


@contextmanager
def transaction(con):
    """BEGIN … COMMIT; on an error, ROLLBACK and re-raise that error (a ROLLBACK that fails too,
    as after a full disk, must not hide the cause behind "cannot rollback")."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass
        raise


def open_writer(path: Path | str, retry_s: float | None = None):
    """A short-lived writing connection (the parent process only; never a training child)."""
    return _connection(path, False, retry_s)


def open_readonly(path: Path | str, retry_s: float | None = None, config: dict | None = None):
    """A short-lived read-only connection (``config``: extra DuckDB settings)."""
    return _connection(path, True, retry_s, config)
