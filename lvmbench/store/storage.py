"""The on-disk format of ``results.duckdb``: a storage version that DuckDB 1.x reads, and the one-time
migration of a file written in DuckDB 2.0's format.

DuckDB writes new files in the newest storage format by default, which older readers (notebooks and
SQL consoles still on DuckDB 1.x) refuse. ``storage_compatibility_version`` makes DuckDB write the
format of an older release; an existing file keeps the format it was created in, so a file created
in 2.0's format is copied once into the readable format and the original is kept as a backup.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

STORAGE_VERSION = "v1.0.0"  # every DuckDB from 1.0 on reads it
READABLE_FORMAT = 64  # the storage number in the header of a file in that format (DuckDB 1.x reads only this)
BACKUP_SUFFIX = ".v2-backup.duckdb"


def connect_config() -> dict:
    """The DuckDB connection settings that make newly created files readable by DuckDB 1.x."""
    return {"storage_compatibility_version": STORAGE_VERSION}


def storage_number(path: Path | str) -> int | None:
    """The storage format number in a DuckDB file's header (None: no such file, or too short)."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except FileNotFoundError:
        return None
    return struct.unpack("<Q", head[12:20])[0] if len(head) == 20 else None


def needs_migration(path: Path | str) -> bool:
    """True for an existing file in a storage format DuckDB 1.x cannot read."""
    number = storage_number(path)
    return number is not None and number != READABLE_FORMAT


def backup_path(path: Path) -> Path:
    """A free name next to ``path`` for the original of a migrated file."""
    stem = path.name[: -len(".duckdb")] if path.name.endswith(".duckdb") else path.name
    candidate, n = path.with_name(stem + BACKUP_SUFFIX), 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{stem}.v2-backup-{n}.duckdb")
    return candidate


def migrate(con, path: Path) -> Path:
    """Copy the database ``con`` holds open for writing at ``path`` into the readable format, then put
    the copy in its place and keep the original as a backup; return the backup's path. ``con`` is
    closed (the caller reconnects). Every table's row count is checked before anything is renamed."""
    path = Path(path)
    tmp = path.with_name(path.name + ".migrating")
    for leftover in (tmp, Path(str(tmp) + ".wal")):
        leftover.unlink(missing_ok=True)
    source = con.execute("SELECT current_database()").fetchone()[0]
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()").fetchall()]
    counts = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    con.execute(f"ATTACH '{_quote(tmp)}' AS lvmbench_migrated (STORAGE_VERSION '{STORAGE_VERSION}')")
    try:
        con.execute(f'COPY FROM DATABASE "{source}" TO lvmbench_migrated')
        copied = {t: con.execute(f'SELECT count(*) FROM lvmbench_migrated."{t}"').fetchone()[0] for t in tables}
    finally:
        con.execute("DETACH lvmbench_migrated")
        con.close()
    if copied != counts:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"migrating {path} lost rows: {counts} became {copied}")
    backup = backup_path(path)
    os.replace(path, backup)
    os.replace(tmp, path)
    return backup


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")
