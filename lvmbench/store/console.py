"""The read-only SQL console over ``results.duckdb`` (``lvmbench sql`` and the UI's SQL screen).

The console never writes a file or a database. Two layers, each enough against the writes we know:

1. Only queries run: every statement must parse (DuckDB's own parser) as a SELECT — which covers
   ``FROM``, ``WITH``, ``VALUES``, ``DESCRIBE``, ``SHOW``, ``SUMMARIZE`` and ``PIVOT … IN (…)``.
   ATTACH, COPY, EXPORT, INSTALL/LOAD, CREATE (SECRET, TABLE, MACRO …), SET/RESET/USE, PRAGMA,
   CALL (CHECKPOINT), EXPLAIN (``EXPLAIN ANALYZE`` executes its statement), transactions and every
   other kind are refused with one line before anything runs.
2. The connection cannot write even if a statement got through: the database is opened read-only,
   extensions are never installed or loaded on demand, nothing spills to a temporary directory,
   secrets are never persisted, and the configuration is locked (a query cannot switch any of this
   back, nor turn on logging or profiling to a file).

Reading other files for analysis stays allowed (``read_csv``, ``read_parquet``, ``read_json``,
``'file.csv'`` in FROM): reading writes nothing.
"""
from __future__ import annotations

import re

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ..errors import UserError
from .db import open_readonly

# DuckDB settings of a console connection (see the module docstring, layer 2).
CONSOLE_CONFIG = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "allow_persistent_secrets": False,
    "temp_directory": "",
    "lock_configuration": True,
}

READ_ONLY_HINT = ("the SQL console is read-only (SELECT, FROM, WITH, VALUES, DESCRIBE, SHOW, SUMMARIZE); "
                  "the store is written only by ingest")


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple]
    truncated: bool = False


def open_console(path: Path | str, retry_s: float | None = None):
    """A short-lived read-only connection with the console's locked settings."""
    return open_readonly(path, retry_s=retry_s, config=CONSOLE_CONFIG)


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> list:
    """The statements of ``sql``, each checked to be a query; else one-line UserError."""
    if not sql.strip():
        raise UserError("empty query: " + READ_ONLY_HINT)
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise UserError(f"SQL error: {first_line(exc)}") from None
    if not statements:
        raise UserError("empty query: " + READ_ONLY_HINT)
    for statement in statements:
        if _kind(statement) != duckdb.StatementType.SELECT:
            raise UserError(f"refused {first_keyword(statement.query)}: {READ_ONLY_HINT}")
    return statements


def run_query(con: duckdb.DuckDBPyConnection, sql: str, limit: int | None = None) -> QueryResult:
    """Check ``sql`` and run it; the last statement's rows (at most ``limit``) are the result.
    Ctrl-C interrupts the query (the main thread waits while a worker thread runs it)."""
    statements = check_read_only(con, sql)
    outcome: dict = {}
    cancelled = threading.Event()

    def work():
        try:
            cur = None
            for statement in statements:
                if cancelled.is_set():
                    raise KeyboardInterrupt
                cur = con.execute(statement)
            columns = [d[0] for d in cur.description] if cur is not None and cur.description else []
            rows = (cur.fetchall() if limit is None else cur.fetchmany(limit + 1)) if columns else []
            outcome["result"] = QueryResult(columns, rows[:limit] if limit is not None else rows,
                                            limit is not None and len(rows) > limit)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    if threading.current_thread() is not threading.main_thread():
        work()
    else:
        worker = threading.Thread(target=work, name="lvmbench-sql", daemon=True)
        try:
            worker.start()
            while worker.is_alive():
                worker.join(0.1)
        except KeyboardInterrupt:
            cancelled.set()
            deadline = time.monotonic() + 10
            while worker.is_alive() and time.monotonic() < deadline:  # the query may only be starting
                con.interrupt()
                worker.join(0.1)
            raise
    if "error" in outcome:
        exc = outcome["error"]
        if isinstance(exc, duckdb.Error):
            raise UserError(f"SQL error: {first_line(exc)}") from None
        raise exc
    return outcome["result"]


def query(path: Path | str, sql: str, limit: int | None = None) -> QueryResult:
    """Open the store read-only with the console's settings and run one console query."""
    with open_console(path) as con:
        return run_query(con, sql, limit)


COMMENTS = re.compile(r"(\s+|--[^\n]*(\n|$)|/\*.*?(\*/|$))+", re.S)


def first_keyword(sql: str) -> str:
    """A statement's first word, after any leading comments (``-- …`` lines and ``/* … */`` blocks)."""
    words = COMMENTS.sub(" ", sql, count=1).split() if COMMENTS.match(sql) else sql.split()
    return words[0].upper() if words else "statement"


def _kind(statement):
    try:
        return statement.type
    except ValueError:  # a kind the Python client cannot even name (e.g. UPDATE EXTENSIONS)
        return None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
