"""The UI's access to ``results.duckdb``: serialised, short-lived connections, called from worker threads.

DuckDB refuses a read-only and a writing connection to one file in the same process, so every
access takes one lock. Reads are read-only; the UI writes only by ingesting run directories.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lvmbench.runs.rundir import RunDir

if TYPE_CHECKING:
    from lvmbench.store.ingest import IngestReport

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
        from lvmbench.store import open_readonly  # DuckDB loads in the first worker, not at startup

        with self._lock, open_readonly(self.path) as con:
            return fn(con)

    def ingest(self, runs: list[RunDir]) -> list[str]:
        """Store ``runs``; raises UserError naming those that could not be stored (after storing the rest)."""
        from lvmbench.errors import UserError
        from lvmbench.store import open_writer
        from lvmbench.store.ingest import ingest_runs

        with self._lock, open_writer(self.path) as con:
            report = ingest_runs(con, runs)
        if report.skipped:
            raise UserError("; ".join(f"{path.name}: {why}" for path, why in report.skipped))
        return [r.run_id for r in runs]

    def ingest_dir(self, path: Path) -> "IngestReport":
        """What ``lvmbench ingest`` does: every run directory under ``path``."""
        from lvmbench.store import open_writer
        from lvmbench.store.ingest import ingest_dir

        with self._lock, open_writer(self.path) as con:
            return ingest_dir(con, path)

    def console(self, sql: str, limit: int = MAX_ROWS) -> Result:
        """A query typed by the user: the SQL console's read-only rules (``lvmbench sql``)."""
        from ..store.console import open_console, run_query

        with self._lock, open_console(self.path) as con:
            found = run_query(con, sql, limit)
        return Result(found.columns, [list(r) for r in found.rows], found.truncated)

    def query(self, sql: str, params: list | None = None, limit: int = MAX_ROWS) -> Result:
        def run(con):
            cur = con.execute(sql, params or [])
            columns = [d[0] for d in cur.description] if cur.description else []
            rows = [list(r) for r in cur.fetchmany(limit + 1)] if columns else []
            return Result(columns, rows[:limit], len(rows) > limit)

        return self.read(run)


def export_text(columns: list[str], rows: list[list], fmt_name: str, title: str | None = None) -> str:
    """Rows as Markdown or CSV text (the CLI's renderer, written to a string)."""
    import io

    from rich.console import Console

    from lvmbench.render import render

    buf = io.StringIO()
    render(columns, rows, fmt_name, title=title, console=Console(file=buf, width=10_000, color_system=None))
    return buf.getvalue()


RUNS_SQL = """
    SELECT r.status, r.method, r.seed, e.overall, e.few, r.dataset, r.backbone,
           r.s_per_iter, r.peak_mem_mib, r.energy_kwh, r.run_id
    FROM runs r LEFT JOIN evals e ON e.run_id = r.run_id AND e.split = 'test'
    ORDER BY coalesce(r.started_at, r.ended_at) DESC NULLS LAST, r.run_id DESC"""
RUNS_COLUMNS = ["status", "method", "seed", "overall", "few", "dataset", "backbone", "s/iter", "peak MiB", "kWh",
                "run"]  # the full id last: the figures fit in 80 columns (the Runs screen shows a short id first)


def live_rows(runs_dir: Path, watched: set[str]) -> dict[str, list]:
    """Rows (as in :data:`RUNS_COLUMNS`) of the queued and running runs of ``runs_dir``, whoever started
    them, with their current step, and of the ``watched`` runs (seen active before) as their directory
    says they ended; a running run whose process vanished is recorded ``killed``."""
    from lvmbench.runs.process import recover
    from lvmbench.runs.rundir import ACTIVE, list_runs

    rows = {}
    for run in list_runs(runs_dir):
        status = run.status()
        if status.get("status") not in ACTIVE and run.run_id not in watched:
            continue
        status = recover(run) if status.get("status") == "running" else status
        try:
            spec = run.spec()
        except (OSError, ValueError):
            continue
        state = status.get("status", "queued")
        if state == "running":
            state = f"running {run.last_step()}/{spec.get('train.iters')}"
        rows[run.run_id] = [state, spec.get("method"), spec.get("seed"), None, None, spec.get("dataset"),
                            spec.get("backbone"), status.get("s_per_iter"), status.get("peak_mem_mib"),
                            status.get("energy_kwh"), run.run_id]
    return rows


def short_id(run_id: str, dataset, method, seed) -> str:
    """What tells a run apart from others of its dataset, method and seed: the random tail of an id that
    ``lvmbench`` made (``<dataset>-<method>-s<seed>-<date>-<time>-<hex>``), else the id less that prefix."""
    prefix = f"{dataset}-{method}-s{seed}-"
    rest = run_id[len(prefix):] if run_id.startswith(prefix) else run_id
    made = re.fullmatch(r"\d{8}-\d{6}-([0-9a-f]+)", rest)
    return made[1] if made else rest


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
