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

import json

from .schema import TYPES

BATCH = {"run_id": "VARCHAR", "replace_metrics": "BOOLEAN", "replace_system": "BOOLEAN"}
TEXT = {"run_id": "VARCHAR", "kind": "VARCHAR", "content": "VARCHAR"}
SETUP = [
    f"CREATE TEMP TABLE IF NOT EXISTS _ingest_batch ({', '.join(f'{c} {t}' for c, t in BATCH.items())})",
    f"CREATE TEMP TABLE IF NOT EXISTS _ingest_text ({', '.join(f'{c} {t}' for c, t in TEXT.items())})",
    """CREATE OR REPLACE TEMP MACRO _ingest_ts(t) AS
       CASE WHEN t IS NULL OR t = 0 OR NOT isfinite(t) THEN NULL
            ELSE make_timestamp(CAST(trunc(t) AS BIGINT) * 1000000
                                + CAST(round_even((t - trunc(t)) * 1000000, 0) AS BIGINT)) END""",
]

# Every non-blank line of the staged logs; ok: it is a JSON object (the others are counted, not stored).
LINES = """
    CREATE OR REPLACE TEMP TABLE _ingest_lines AS
    SELECT run_id, kind, line_no, line, CASE WHEN json_valid(line) THEN json_type(line) = 'OBJECT' ELSE false END AS ok
    FROM (SELECT run_id, kind, unnest(ls) AS line, unnest(range(1, len(ls) + 1)) AS line_no
          FROM (SELECT run_id, kind, string_split(content, chr(10)) AS ls FROM _ingest_text
                WHERE kind IN ('metrics', 'system')))
    WHERE trim(line) <> ''"""

UNREADABLE = "SELECT run_id, kind, count(*) FROM _ingest_lines WHERE NOT ok GROUP BY run_id, kind"
METRIC_KEYS = """
    SELECT key FROM (SELECT DISTINCT unnest(json_keys(line)) AS key FROM _ingest_lines WHERE kind = 'metrics' AND ok)
    WHERE key <> '' ORDER BY key"""  # a value under an empty key is no metric (nor can a structure hold it)

# Eval files must be JSON objects and per-class files arrays (json() refuses malformed text).
MISSHAPEN = """
    SELECT run_id, kind FROM _ingest_text WHERE kind NOT IN ('metrics', 'system')
      AND json_type(json(content)) <> CASE WHEN kind LIKE 'per_class_%' THEN 'ARRAY' ELSE 'OBJECT' END"""


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def metrics_sql(keys: list[str]) -> str:
    """The metrics rows of the staged logs, whose records hold ``keys`` between them: each record
    parsed once into a structure of those keys (as JSON), unpivoted into (key, value) pairs."""
    structure = _literal(json.dumps({k: "JSON" for k in keys}))
    values = [k for k in keys if k not in ("step", "ts")]
    if not values:
        return "CREATE OR REPLACE TEMP TABLE _ingest_metrics AS SELECT * FROM metrics LIMIT 0"
    field = {k: f"struct_extract(r, {_literal(k)})" for k in keys}
    columns = ", ".join(f"{field[k]} AS v{i}" for i, k in enumerate(values, 1))  # v<i>: any key is a safe name
    names = "[" + ", ".join(_literal(k) for k in values) + "]"
    return f"""
    CREATE OR REPLACE TEMP TABLE _ingest_metrics AS
    SELECT run_id, step, {names}[CAST(substr(v, 2) AS INTEGER)] AS key, CAST(value AS DOUBLE) AS value,
           _ingest_ts(ts) AS ts
    FROM (SELECT run_id, line_no, TRY_CAST({field.get("step", "NULL")} AS BIGINT) AS step,
                 TRY_CAST({field.get("ts", "NULL")} AS DOUBLE) AS ts, {columns}
          FROM (SELECT run_id, line_no, from_json(line, {structure}) AS r FROM _ingest_lines
                WHERE kind = 'metrics' AND ok))
    UNPIVOT (value FOR v IN ({", ".join(f"v{i}" for i in range(1, len(values) + 1))}))
    WHERE json_type(value) IN ('BIGINT', 'UBIGINT', 'DOUBLE')
    QUALIFY row_number() OVER (PARTITION BY run_id, step, v ORDER BY line_no DESC) = 1"""


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
    system = json.dumps({c: "JSON" for c in ["ts", *scols]})
    return [
        f"""INSERT INTO evals (run_id, split, {', '.join(ecols)})
            SELECT run_id, kind, e.* FROM (SELECT run_id, kind, from_json(json(content), '{evals}') AS e
                                           FROM _ingest_text WHERE kind IN ('val', 'test'))""",
        f"""INSERT INTO per_class (run_id, split, {', '.join(pcols)})
            SELECT run_id, split, p.* FROM (
                SELECT run_id, substr(kind, 11) AS split, unnest(from_json(json(content), '[{per_class}]')) AS p
                FROM _ingest_text WHERE kind LIKE 'per_class_%')""",
        METRICS_REPLACED,
        "INSERT INTO metrics (run_id, step, key, value, ts) SELECT run_id, step, key, value, ts FROM _ingest_metrics",
        f"""INSERT INTO system (run_id, ts, {', '.join(scols)})
            SELECT run_id, _ingest_ts(TRY_CAST(r.ts AS DOUBLE)), {', '.join(f"TRY_CAST(r.{c} AS {TYPES['system'][c]})"
                                                                          for c in scols)}
            FROM (SELECT run_id, line_no, from_json(line, '{system}') AS r FROM _ingest_lines
                  WHERE kind = 'system' AND ok) ORDER BY run_id, line_no""",
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
    keys = [k for (k,) in con.execute(METRIC_KEYS).fetchall()]
    con.execute(metrics_sql(keys))
    for sql in INSERTS:
        con.execute(sql)
    return {(rid, kind): n for rid, kind, n in con.execute(UNREADABLE).fetchall()}
