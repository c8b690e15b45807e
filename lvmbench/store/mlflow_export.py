"""``lvmbench export mlflow``: every stored run as an MLflow run, idempotently.

Mapping: the run's spec → params; the ``metrics`` table → metric history (step and timestamp kept);
``evals`` → final metrics ``final/<split>/<metric>``; cost → ``cost/<column>``; ``system`` samples →
MLflow's system metrics (``system/...``); status → run status; per-class accuracy → a CSV artifact.
Each MLflow run carries the tag ``lvmbench.run_id`` and a fingerprint of what was exported: exporting
again leaves unchanged runs alone and replaces a run whose stored record changed (e.g. resumed).
Needs the optional extra: ``pip install 'lvmbench[mlflow]'``.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import socket
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import UserError
from .db import open_readonly

STATUS = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED", "cancelled": "KILLED",
          "running": "RUNNING", "queued": "SCHEDULED"}
EVAL_METRICS = ("overall", "many", "medium", "few", "precision", "recall", "f1", "worst_class")
COST_METRICS = ("wall_s", "s_per_iter", "peak_mem_mib", "avg_power_w", "energy_kwh", "co2_kg")
SYSTEM_METRICS = {"mem_mib": "memory_usage_megabytes", "power_w": "power_watts", "util_pct": "utilization_percentage",
                  "energy_j": "energy_joules"}
BATCH = 1000  # MLflow's limit of entities per log_batch call
RUN_TAG, FINGERPRINT_TAG = "lvmbench.run_id", "lvmbench.fingerprint"
EXPORTED = ("runs", "evals", "metrics", "system", "per_class")  # the tables that hold results


@dataclass
class Exported:
    tracking_uri: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0


def _ms(ts) -> int | None:
    if ts is None:
        return None
    return int(ts.replace(tzinfo=timezone.utc).timestamp() * 1000) if isinstance(ts, datetime) else int(ts)


def read_store(results: Path) -> dict[str, dict[str, list[dict]]]:
    """Every table's rows grouped by run id (the database is closed before MLflow is contacted)."""
    by_run: dict[str, dict[str, list[dict]]] = {}
    with open_readonly(results) as con:
        for table in EXPORTED:  # every column the file has (one written by an older lvmbench has fewer)
            cur = con.execute(f"SELECT * FROM {table} ORDER BY ALL")
            cols = [d[0] for d in cur.description]
            for row in cur.fetchall():
                record = dict(zip(cols, row))
                by_run.setdefault(record["run_id"], {t: [] for t in EXPORTED})[table].append(record)
    return {rid: tables for rid, tables in by_run.items() if tables["runs"]}


def fingerprint(tables: dict[str, list[dict]]) -> str:
    return hashlib.sha256(json.dumps(tables, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _system_key(sample: dict, column: str) -> str:
    device = f"gpu_{sample['gpu_index']}_" if sample.get("gpu_index") is not None else ""
    return f"system/{device}{SYSTEM_METRICS[column]}"


def metrics_of(tables: dict[str, list[dict]]) -> list[tuple[str, float, int, int]]:
    """(key, value, timestamp in ms, step) of everything a run's MLflow record holds as metrics."""
    from ..runs.rundir import now

    run = tables["runs"][0]
    end = _ms(run["ended_at"]) or _ms(run["started_at"]) or int(now() * 1000)
    last_step = run["iters"] or 0
    out = [(m["key"], m["value"], _ms(m["ts"]) or end, m["step"] or 0) for m in tables["metrics"]
           if m["value"] is not None]
    for ev in tables["evals"]:
        out += [(f"final/{ev['split']}/{k}", ev[k], end, last_step) for k in EVAL_METRICS if ev[k] is not None]
    out += [(f"cost/{k}", run[k], end, last_step) for k in COST_METRICS if run[k] is not None]
    for step, sample in enumerate(tables["system"]):
        out += [(_system_key(sample, c), sample[c], _ms(sample["ts"]) or end, step)
                for c in SYSTEM_METRICS if sample[c] is not None]
    return out


def params_of(run: dict) -> dict[str, str]:
    spec = json.loads(run["config"]) if run["config"] else {}
    return {k: str(v) for k, v in sorted(spec.items())}


def per_class_csv(rows: list[dict], split: str) -> str:
    buf = io.StringIO()
    cols = ["class_id", "class_name", "n_train", "accuracy"]
    writer = csv.writer(buf)
    writer.writerow(cols)
    writer.writerows([r[c] for c in cols] for r in rows if r["split"] == split)
    return buf.getvalue()


def _mlflow():
    try:
        import mlflow
    except ImportError:
        raise UserError("MLflow is not installed: pip install 'lvmbench[mlflow]' (or mlflow-skinny)") from None
    return mlflow


CONNECT_TIMEOUT_S = 10  # a tracking server that does not answer within this is named, not waited on


def check_reachable(uri: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse (one line, naming the server) an HTTP tracking server that takes no connection within
    ``timeout_s``; bound each later request to it the same way (MLflow's own default retries for minutes)."""
    url = urllib.parse.urlsplit(uri)
    if url.scheme not in ("http", "https"):
        return
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(timeout_s)))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
        with socket.create_connection((url.hostname or "localhost", port), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else (getattr(exc, "strerror", None) or str(exc))
        raise UserError(f"mlflow: cannot reach the tracking server {url.scheme}://{url.netloc} within "
                        f"{timeout_s:g} s ({why})") from None


def _database_hint(uri: str) -> str:
    """mlflow-skinny lacks what database stores need (SQLAlchemy, Alembic)."""
    import importlib.util

    database = str(uri).split(":", 1)[0] in ("sqlite", "postgresql", "mysql", "mssql")
    if database and importlib.util.find_spec("sqlalchemy") is None:
        return " (a database tracking store needs the full package: pip install mlflow)"
    return ""


def export_mlflow(results: Path, tracking_uri: str | None = None, experiment: str = "lvmbench") -> Exported:
    """Log every stored run to MLflow; runs exported before with the same content are left alone."""
    store = read_store(results)
    mlflow = _mlflow()
    from mlflow.exceptions import MlflowException

    uri = tracking_uri or mlflow.get_tracking_uri()
    check_reachable(uri)
    done = Exported(uri)
    try:
        client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        found = client.get_experiment_by_name(experiment)
        exp_id = found.experiment_id if found else client.create_experiment(experiment)
        existing = {r.data.tags.get(RUN_TAG): r for r in client.search_runs([exp_id], max_results=50000)}
        for run_id, tables in store.items():
            print_ = fingerprint(tables)
            old = existing.get(run_id)
            if old is not None and old.data.tags.get(FINGERPRINT_TAG) == print_:
                done.unchanged += 1
                continue
            if old is not None:
                client.delete_run(old.info.run_id)
            _log_run(client, exp_id, tables, print_)
            done.updated += old is not None
            done.created += old is None
    except (MlflowException, ImportError) as exc:
        raise UserError(f"mlflow ({uri}): {str(exc).strip().splitlines()[0]}{_database_hint(uri)}") from None
    return done


def _log_run(client, exp_id: str, tables: dict[str, list[dict]], print_: str) -> None:
    from mlflow.entities import Metric, Param

    run = tables["runs"][0]
    tags = {RUN_TAG: run["run_id"], FINGERPRINT_TAG: print_, "mlflow.runName": run["run_id"],
            **{f"lvmbench.{k}": str(run[k]) for k in ("dataset", "backbone", "pretrained", "method", "seed",
                                                       "stage", "config_hash", "sweep_id", "parent_run_id", "recipe")
               if run.get(k) is not None}}
    if run["git_sha"]:
        tags["mlflow.source.git.commit"] = run["git_sha"]
    created = client.create_run(exp_id, start_time=_ms(run["started_at"]), tags=tags)
    mid = created.info.run_id
    params = [Param(k, v) for k, v in params_of(run).items()]
    for i in range(0, len(params), 100):  # MLflow's limit of params per batch
        client.log_batch(mid, params=params[i:i + 100])
    metrics = [Metric(k, float(v), ts, step) for k, v, ts, step in metrics_of(tables)]
    for i in range(0, len(metrics), BATCH):
        client.log_batch(mid, metrics=metrics[i:i + BATCH])
    for split in sorted({r["split"] for r in tables["per_class"]}):
        client.log_text(mid, per_class_csv(tables["per_class"], split), f"per_class_{split}.csv")
    status = STATUS.get(run["status"], "FAILED")
    if status in ("FINISHED", "FAILED", "KILLED"):
        client.set_terminated(mid, status, end_time=_ms(run["ended_at"]))
    else:
        client.update_run(mid, status=status)
