"""Ingest run directories into the database, idempotently: ingesting a run twice adds nothing."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from ..rundir import RunDir, find_runs
from .schema import COLUMNS

CARBON_KG_PER_KWH = 0.544  # default carbon intensity used for runs.co2_kg


def _ts(value):
    return datetime.fromtimestamp(float(value), timezone.utc).replace(tzinfo=None) if value else None


def run_row(run: RunDir, carbon_kg_per_kwh: float = CARBON_KG_PER_KWH) -> dict:
    """The ``runs`` row of a run directory."""
    from ..config import config_hash

    spec, status = run.spec(), run.status()
    energy = status.get("energy_kwh")
    return {
        "run_id": run.run_id, "sweep_id": spec.get("sweep_id"), "dataset": spec["dataset"],
        "backbone": spec["backbone"], "pretrained": spec.get("pretrained"), "method": spec["method"],
        "stage": status.get("stage", 2 if spec.get("stage1.run_id") else 1),
        "parent_run_id": status.get("parent_run_id") or spec.get("stage1.run_id"), "seed": spec["seed"],
        "status": status.get("status", "queued"), "config": json.dumps(spec, sort_keys=True, default=str),
        "config_hash": spec.get("config_hash") or config_hash(spec), "git_sha": spec.get("git_sha"),
        "device": status.get("device"), "gpu_name": status.get("gpu_name"),
        "trainable_params": status.get("trainable_params"), "total_params": status.get("total_params"),
        "iters": status.get("iters", spec.get("train.iters")), "batch_size": spec.get("train.batch_size"),
        "started_at": _ts(status.get("started_at")), "ended_at": _ts(status.get("ended_at")),
        "wall_s": status.get("wall_s"), "s_per_iter": status.get("s_per_iter"),
        "peak_mem_mib": status.get("peak_mem_mib"), "avg_power_w": status.get("avg_power_w"),
        "energy_kwh": energy, "co2_kg": energy * carbon_kg_per_kwh if energy is not None else None,
        "error": status.get("error"), "skipped_images": status.get("skipped_images"),
        # A run made before recipes existed has none: it is neither recipe, and tables keep it apart.
        "recipe": spec.get("recipe"), "selected_on": status.get("selected_on"),
        # A fused group's members trained in one process: the group's costs, and each member's share above.
        "fused_group": spec.get("fused_group"), "fused_size": status.get("fused_size", spec.get("fused_size", 1)),
        "group_wall_s": status.get("group_wall_s", status.get("wall_s")),
        "group_energy_kwh": status.get("group_energy_kwh", energy),
        "group_peak_mem_mib": status.get("group_peak_mem_mib", status.get("peak_mem_mib")),
    }


def _insert(con, table: str, rows: list[dict]) -> None:
    if not rows:
        return
    cols = COLUMNS[table]
    con.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [[r.get(c) for c in cols] for r in rows])


def ingest_run(con, run: RunDir) -> None:
    """Replace everything stored about ``run`` by what its directory holds, in one transaction."""
    rid = run.run_id
    evals, per_class = [], []
    for split in ("val", "test"):
        ev = run.evaluation(split)
        if ev:
            evals.append({**ev, "run_id": rid, "split": split})
            per_class += [{**pc, "run_id": rid, "split": split} for pc in run.per_class(split)]
    # A resumed run logs again the steps after its last checkpoint: the latest record of a (step, key) wins.
    metrics = list({(rec.get("step"), key): {"run_id": rid, "step": rec.get("step"), "key": key,
                                             "value": float(value), "ts": _ts(rec.get("ts"))}
                    for rec in run.metrics() for key, value in rec.items()
                    if key not in ("step", "ts") and isinstance(value, (int, float))
                    and not isinstance(value, bool)}.values())
    system = [{**s, "run_id": rid, "ts": _ts(s.get("ts"))} for s in run.system()]
    con.execute("BEGIN TRANSACTION")
    try:
        for table in COLUMNS:
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [rid])
        _insert(con, "runs", [run_row(run)])
        _insert(con, "evals", evals)
        _insert(con, "per_class", per_class)
        _insert(con, "metrics", metrics)
        _insert(con, "system", system)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def ingest_dir(con, path: Path) -> list[str]:
    """Ingest one run directory, or every run directory below ``path``; return their ids. Runs that
    failed on bad input (``user_error`` in their status) are left out: they hold no result."""
    runs = [r for r in find_runs(path) if not r.status().get("user_error")]
    for run in runs:
        ingest_run(con, run)
    return [r.run_id for r in runs]
