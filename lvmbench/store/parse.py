"""Run files to table rows, in DuckDB: staged text in, rows of ``evals``, ``per_class``, ``metrics``
and ``system`` out, for a whole batch of runs at once (columnar: no Python row per record).

The staged text of a batch is ``_ingest_text(run_id, kind, content)``, kind one of ``metrics`` and
``system`` (complete JSONL lines), ``val``/``test`` (``eval/<split>.json``) and
``per_class_val``/``per_class_test``; ``_ingest_batch(run_id, replace_metrics, replace_system)`` says
whether a log's lines replace the run's stored rows or follow them.

A log line is stored when it is a JSON object (a line that is not is counted, not stored). A metrics
record becomes one row per numeric value other than ``step`` and ``ts`` (booleans, strings and
nulls are not metrics), and the latest record of a (step, key) wins: a resumed run logs again the
steps after its last checkpoint. Timestamps are Unix seconds, stored as naive UTC rounded to the
microsecond half to even (as Python's ``datetime.fromtimestamp``); 0 or none is NULL.
"""
from __future__ import annotations

from .schema import TYPES

SETUP = [
    "CREATE TEMP TABLE IF NOT EXISTS _ingest_batch (run_id VARCHAR, replace_metrics BOOLEAN, replace_system BOOLEAN)",
    "CREATE TEMP TABLE IF NOT EXISTS _ingest_text (run_id VARCHAR, kind VARCHAR, content VARCHAR)",
    """CREATE OR REPLACE TEMP MACRO _ingest_ts(t) AS
       CASE WHEN t IS NULL OR t = 0 OR NOT isfinite(t) THEN NULL
            ELSE make_timestamp(CAST(trunc(t) AS BIGINT) * 1000000
                                + CAST(round_even((t - trunc(t)) * 1000000, 0) AS BIGINT)) END""",
]

# Every line of the staged logs, parsed once: rec is NULL for a line that is not a JSON object.
LINES = """
    CREATE OR REPLACE TEMP TABLE _ingest_lines AS
    SELECT s.run_id, s.kind, r.i AS line_no, TRY_CAST(TRY_CAST(s.ls[r.i] AS JSON) AS MAP(VARCHAR, JSON)) AS rec,
           trim(s.ls[r.i]) = '' AS blank
    FROM (SELECT run_id, kind, string_split(content, chr(10)) AS ls FROM _ingest_text
          WHERE kind IN ('metrics', 'system')) s, range(1, len(s.ls)) r(i)"""

UNREADABLE = """
    SELECT run_id, kind, count(*) FROM _ingest_lines WHERE rec IS NULL AND NOT blank GROUP BY run_id, kind"""

# Eval files must be JSON objects and per-class files arrays (json() refuses malformed text).
MISSHAPEN = """
    SELECT run_id, kind FROM _ingest_text WHERE kind NOT IN ('metrics', 'system')
      AND json_type(json(content)) <> CASE WHEN kind LIKE 'per_class_%' THEN 'ARRAY' ELSE 'OBJECT' END"""

METRICS = """
    CREATE OR REPLACE TEMP TABLE _ingest_metrics AS
    SELECT run_id, TRY_CAST(step AS BIGINT) AS step, e.key AS key, CAST(e.value AS DOUBLE) AS value,
           _ingest_ts(TRY_CAST(ts AS DOUBLE)) AS ts
    FROM (SELECT run_id, line_no, rec['step'] AS step, rec['ts'] AS ts, unnest(map_entries(rec)) AS e
          FROM _ingest_lines WHERE kind = 'metrics' AND rec IS NOT NULL)
    WHERE e.key NOT IN ('step', 'ts') AND json_type(e.value) IN ('BIGINT', 'UBIGINT', 'DOUBLE')
    QUALIFY row_number() OVER (PARTITION BY run_id, TRY_CAST(step AS BIGINT), e.key ORDER BY line_no DESC) = 1"""

# Appended lines replace the stored rows of the same (step, key).
METRICS_REPLACED = """
    DELETE FROM metrics USING _ingest_metrics n, _ingest_batch b
    WHERE b.run_id = n.run_id AND NOT b.replace_metrics AND metrics.run_id = n.run_id
      AND metrics.key = n.key AND metrics.step IS NOT DISTINCT FROM n.step"""


def _struct(table: str, skip: tuple[str, ...]) -> tuple[str, list[str]]:
    """A ``from_json`` structure of ``table``'s columns (less ``skip``) and the column list."""
    cols = [c for c in TYPES[table] if c not in skip]
    return "{" + ", ".join(f'"{c}": "{TYPES[table][c]}"' for c in cols) + "}", cols


def _inserts() -> list[str]:
    evals, ecols = _struct("evals", ("run_id", "split"))
    per_class, pcols = _struct("per_class", ("run_id", "split"))
    scols = [c for c in TYPES["system"] if c not in ("run_id", "ts")]
    return [
        f"""INSERT INTO evals (run_id, split, {', '.join(ecols)})
            SELECT run_id, kind, e.* FROM (SELECT run_id, kind, from_json(json(content), '{evals}') AS e
                                           FROM _ingest_text WHERE kind IN ('val', 'test'))""",
        f"""INSERT INTO per_class (run_id, split, {', '.join(pcols)})
            SELECT run_id, split, p.* FROM (
                SELECT run_id, substr(kind, 11) AS split, unnest(from_json(json(content), '[{per_class}]')) AS p
                FROM _ingest_text WHERE kind LIKE 'per_class_%')""",
        METRICS,
        METRICS_REPLACED,
        "INSERT INTO metrics (run_id, step, key, value, ts) SELECT run_id, step, key, value, ts FROM _ingest_metrics",
        f"""INSERT INTO system (run_id, ts, {', '.join(scols)})
            SELECT run_id, _ingest_ts(TRY_CAST(rec['ts'] AS DOUBLE)),
                   {', '.join(f"TRY_CAST(rec['{c}'] AS {TYPES['system'][c]})" for c in scols)}
            FROM _ingest_lines WHERE kind = 'system' AND rec IS NOT NULL ORDER BY run_id, line_no""",
    ]


INSERTS = _inserts()


class Misshapen(Exception):
    """A staged eval or per-class file that is not the JSON object or array it must be."""


def setup(con) -> None:
    for sql in SETUP:
        con.execute(sql)


def insert_rows(con) -> dict[tuple[str, str], int]:
    """Insert the rows parsed from the staged text; return the unreadable lines per (run_id, log)."""
    con.execute(LINES)
    bad = con.execute(MISSHAPEN).fetchall()
    if bad:
        raise Misshapen(", ".join(f"{rid}: eval file {kind}" for rid, kind in bad))
    for sql in INSERTS:
        con.execute(sql)
    return {(rid, kind): n for rid, kind, n in con.execute(UNREADABLE).fetchall()}
