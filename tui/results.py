"""The UI's access to ``results.duckdb``: serialised, short-lived connections, called from worker threads.

DuckDB refuses a read-only and a writing connection to one file in the same process, so every
access takes one lock. Reads are read-only; the UI writes only by ingesting run directories.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..rundir import RunDir

if TYPE_CHECKING:
    from ..store.ingest import IngestReport

MAX_ROWS = 2000  # rows a query shows in the UI


@dataclass
class Result:
    columns: list[str]
    rows: list[list]
    truncated: bool = False


class Results:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def exists(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def read(self, fn):
        """``fn(con)`` on a read-only connection (raises UserError when there is no database)."""
        from ..store import open_readonly  # DuckDB loads in the first worker, not at startup

        with self._lock, open_readonly(self.path) as con:
            return fn(con)

    def ingest(self, runs: list[RunDir]) -> list[str]:
        """Store ``runs``; raises UserError naming those that could not be stored (after storing the rest)."""
        from ..errors import UserError
        from ..store import open_writer
        from ..store.ingest import ingest_runs

        with self._lock, open_writer(self.path) as con:
            report = ingest_runs(con, runs)
        if report.skipped:
            raise UserError("; ".join(f"{path.name}: {why}" for path, why in report.skipped))
        return [r.run_id for r in runs]

    def ingest_dir(self, path: Path) -> "IngestReport":
        """What ``lvmbench ingest`` does: every run directory under ``path``."""
        from ..store import open_writer
        from ..store.ingest import ingest_dir

        with self._lock, open_writer(self.path) as con:
            return ingest_dir(con, path)

    def query(self, sql: str, params: list | None = None, limit: int = MAX_ROWS) -> Result:
        def run(con):
            cur = con.execute(sql, params or [])
            columns = [d[0] for d in cur.description] if cur.description else []
            rows = [list(r) for r in cur.fetchmany(limit + 1)] if columns else []
            return Result(columns, rows[:limit], len(rows) > limit)

        return self.read(run)


RUNS_SQL = """
    SELECT r.status, r.dataset, r.backbone, r.method, r.seed, e.overall, e.few,
           r.s_per_iter, r.peak_mem_mib, r.energy_kwh, r.run_id
    FROM runs r LEFT JOIN evals e ON e.run_id = r.run_id AND e.split = 'test'
    ORDER BY coalesce(r.started_at, r.ended_at) DESC NULLS LAST, r.run_id DESC"""
RUNS_COLUMNS = ["status", "dataset", "backbone", "method", "seed", "overall", "few", "s/iter", "peak MiB", "kWh",
                "run"]  # the id last: the figures fit in 80 columns


def runs_table(results: Results) -> Result:
    found = results.query(RUNS_SQL)
    return Result(RUNS_COLUMNS, found.rows, found.truncated)


def datasets(results: Results) -> list[str]:
    return [r[0] for r in results.query("SELECT DISTINCT dataset FROM runs ORDER BY dataset").rows]


@dataclass
class RunDetail:
    run: dict
    evals: Result
    per_class: Result
    config: dict


def run_detail(results: Results, run_id: str) -> RunDetail | None:
    import json

    run = results.query("SELECT * FROM runs WHERE run_id = ?", [run_id])
    if not run.rows:
        return None
    row = dict(zip(run.columns, run.rows[0]))
    evals = results.query("""SELECT split, overall, many, medium, few, precision, recall, f1, worst_class, n_samples
                             FROM evals WHERE run_id = ? ORDER BY split DESC""", [run_id])
    per_class = results.query("""SELECT class_id, class_name, n_train, accuracy FROM per_class
                                 WHERE run_id = ? AND split = 'test' ORDER BY n_train DESC, class_id""",
                              [run_id], limit=100_000)
    config = json.loads(row.pop("config") or "{}")
    return RunDetail(row, evals, per_class, config)
