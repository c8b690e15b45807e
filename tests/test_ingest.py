"""Ingest: the store holds exactly what the run directories hold, however they are ingested.

``reference_ingest`` restates, row by row in plain Python, what ingest stored before it became
columnar and incremental (one record per complete JSON line, the latest record per (step, key),
timestamps as naive UTC): every faster path must store the same rows.
"""
import json
import math
import os
from datetime import datetime, timezone

import duckdb
import pytest

from lvmbench import cli
from lvmbench.rundir import RunDir
from lvmbench.store import open_readonly, open_writer
from lvmbench.store.ingest import ingest_dir, run_row
from lvmbench.store.schema import COLUMNS, RESULT_TABLES, ensure_schema

from .conftest import TINY
from .test_store import fake_run


def _ts(value):
    return datetime.fromtimestamp(float(value), timezone.utc).replace(tzinfo=None) if value else None


def _records(path):
    if not path.exists():
        return []
    out = []
    with open(path) as f:
        for line in f:
            if line.endswith("\n"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return out


def reference_ingest(con, run: RunDir) -> None:
    """The row-by-row ingest of one run: the oracle the columnar ingest is compared with."""
    rid, rows = run.run_id, {t: [] for t in RESULT_TABLES}
    rows["runs"].append(run_row(run))
    for split in ("val", "test"):
        path = run.eval_dir / f"{split}.json"
        if path.exists():
            rows["evals"].append({**json.loads(path.read_text()), "run_id": rid, "split": split})
            pc = run.eval_dir / f"per_class_{split}.json"
            if pc.exists():
                rows["per_class"] += [{**r, "run_id": rid, "split": split} for r in json.loads(pc.read_text())]
    latest = {}
    for rec in _records(run.metrics_file):
        for key, value in rec.items():
            if key not in ("step", "ts") and isinstance(value, (int, float)) and not isinstance(value, bool):
                latest[(rec.get("step"), key)] = {"run_id": rid, "step": rec.get("step"), "key": key,
                                                  "value": float(value), "ts": _ts(rec.get("ts"))}
    rows["metrics"] = list(latest.values())
    rows["system"] = [{**s, "run_id": rid, "ts": _ts(s.get("ts"))} for s in _records(run.system_file)]
    for table, records in rows.items():
        cols = COLUMNS[table]
        con.execute(f"DELETE FROM {table} WHERE run_id = ?", [rid])
        if records:
            con.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                            [[r.get(c) for c in cols] for r in records])


def contents(db) -> dict:
    """Every row of every result table, sorted (NaN as a string: NaN never equals itself)."""
    def same_nan(row):
        return tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in row)

    with open_readonly(db) as con:
        return {t: [same_nan(r) for r in con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()]
                for t in RESULT_TABLES}


def reference_contents(tmp_path, runs: list[RunDir]) -> dict:
    db = tmp_path / "reference.duckdb"
    con = duckdb.connect(str(db))
    ensure_schema(con)
    for run in runs:
        reference_ingest(con, run)
    con.close()
    return contents(db)


def awkward_runs(runs_dir):
    """Run directories with what real ones hold and what a crash or a resume leaves behind."""
    plain = fake_run(runs_dir, "ce", seed=1)
    resumed = fake_run(runs_dir, "focal", seed=2)
    for step, loss, ts in [(30, 1.0, 1_700_000_030.123456), (40, 0.9, 1_700_000_040.5),
                           (30, 1.1, 1_700_000_031.000001), (40, 0.8, 0)]:  # killed after 40, resumed from 20
        resumed.append(resumed.metrics_file, {"step": step, "loss": loss, "lr": 0.005, "ts": ts})
    with open(resumed.metrics_file, "a") as f:
        f.write('{"step": 50, "loss": NaN, "grad": Infinity, "ok": true, "name": "x", "none": null}\n')
        f.write('{"loss": 2.5, "big": 123456789012}\n')  # no step, no ts
        f.write("not json\n")
        f.write('{"step": 60, "loss": 0.7')  # torn last line: not stored
    with open(resumed.system_file, "a") as f:
        f.write('{"ts": 1700000050.25, "gpu_index": 0, "mem_mib": 512.5, "power_w": 80.0, "util_pct": 99.0, '
                '"energy_j": 12.0}\n{"ts": 1700000060.75, "gpu_index": 1}\n{"mem_mib": 1.0}\n')
    two_splits = fake_run(runs_dir, "ldam", seed=3)
    (two_splits.eval_dir / "val.json").write_text(json.dumps({"split": "val", "overall": 41.5, "n_samples": 20}))
    (two_splits.eval_dir / "per_class_val.json").write_text(json.dumps(
        [{"class_id": i, "class_name": f"c{i}", "n_train": 100 - i, "accuracy": i * 1.5} for i in range(5)]))
    no_eval = fake_run(runs_dir, "lade", seed=4, status="running")
    for name in os.listdir(no_eval.eval_dir):
        (no_eval.eval_dir / name).unlink()
    no_eval.metrics_file.unlink()
    return [plain, resumed, two_splits, no_eval]


def ingest_all(db, runs_dir):
    with open_writer(db) as con:
        return ingest_dir(con, runs_dir)


def test_ingest_stores_what_the_row_by_row_ingest_stored(tmp_path):
    runs = awkward_runs(tmp_path / "runs")
    ingest_all(tmp_path / "r.duckdb", tmp_path / "runs")
    got, want = contents(tmp_path / "r.duckdb"), reference_contents(tmp_path, runs)
    assert want["metrics"] and want["system"] and want["per_class"]  # the comparison compares something
    for table in RESULT_TABLES:
        assert got[table] == want[table], table


@pytest.mark.slow
def test_ingest_of_trained_runs_equals_the_row_by_row_ingest(store, tmp_path):
    results, runs_dir = store
    # crt: a two-stage run, trained after its stage-1 (ce) run
    assert cli.main(["run", "--headless", "--method", "crt", "--no-ingest", "--set", *TINY]) == 0
    runs = [RunDir(p) for p in sorted(runs_dir.iterdir())]
    assert len(runs) == 2
    assert cli.main(["ingest"]) == 0
    got, want = contents(results), reference_contents(tmp_path, runs)
    assert len(want["metrics"]) > 10 and want["per_class"] and want["evals"]
    for table in RESULT_TABLES:
        assert got[table] == want[table], table
