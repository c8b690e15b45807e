"""``lvmbench export DIR``: a snapshot of every table of the results database, as files other tools read.

DuckDB's ``EXPORT DATABASE`` writes one file per table plus ``schema.sql`` and ``load.sql``, so the
folder also loads back into DuckDB with ``IMPORT DATABASE 'DIR'``. A snapshot is never written to
again: notebooks can read it while lvmbench keeps writing the database.
"""
from __future__ import annotations

from pathlib import Path

import duckdb

from ..errors import UserError
from ..paths import check_writable, is_no_space, no_space
from .db import open_readonly
from .schema import TABLES

# lvmbench's format name -> DuckDB's (its ``json`` writes one object per line: JSON Lines).
FORMATS = {"parquet": "parquet", "csv": "csv", "jsonl": "json"}


def export_database(results: Path, out_dir: Path, fmt: str = "parquet") -> dict[str, int]:
    """Write every table of ``results`` into the new or empty folder ``out_dir``; return row counts."""
    out_dir = Path(out_dir)
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: choose from {', '.join(FORMATS)}")
    check_writable(out_dir, "export", folder=True)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"{out_dir} exists and is not an empty folder; export into a new one")
    with open_readonly(results) as con:
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            path = str(out_dir.resolve()).replace("'", "''")
            con.execute(f"EXPORT DATABASE '{path}' (FORMAT {FORMATS[fmt]})")
        except (OSError, duckdb.Error) as exc:  # the snapshot's fault, never the database's
            why = no_space(out_dir) if is_no_space(exc) else str(exc).strip().splitlines()[0]
            raise UserError(f"export {out_dir}: {why}") from None
    return counts
