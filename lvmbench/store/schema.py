"""The schema of ``results.duckdb`` (accuracies in percent, as in the study's tables).

Every integer column is a BIGINT: the store holds every value the CLI accepts (a seed of
3,000,000,000 included), so a finished run can always be stored. The columns that hold a setting
take their type from the settings schema (``config.SCHEMA``, ``config.IDENTITY``), which refuses
any value such a column cannot hold.
"""
from __future__ import annotations

from ..config import IDENTITY, SCHEMA

# runs column -> the setting it holds
SETTING_COLUMNS = {"dataset": IDENTITY["dataset"], "backbone": IDENTITY["backbone"],
                   "pretrained": IDENTITY["pretrained"], "method": IDENTITY["method"], "seed": IDENTITY["seed"],
                   "iters": SCHEMA["train.iters"], "batch_size": SCHEMA["train.batch_size"], "recipe": SCHEMA["recipe"]}
_T = {col: param.store_type for col, param in SETTING_COLUMNS.items()}

TABLES = {
    "runs": f"""
        run_id VARCHAR PRIMARY KEY, sweep_id VARCHAR, dataset {_T['dataset']}, backbone {_T['backbone']},
        pretrained {_T['pretrained']}, method {_T['method']}, stage BIGINT, parent_run_id VARCHAR,
        seed {_T['seed']}, status VARCHAR, config JSON,
        config_hash VARCHAR, git_sha VARCHAR, device VARCHAR, gpu_name VARCHAR, trainable_params BIGINT,
        total_params BIGINT, iters {_T['iters']}, batch_size {_T['batch_size']}, started_at TIMESTAMP,
        ended_at TIMESTAMP, wall_s DOUBLE, s_per_iter DOUBLE, peak_mem_mib DOUBLE, avg_power_w DOUBLE,
        energy_kwh DOUBLE, co2_kg DOUBLE, error VARCHAR, skipped_images BIGINT, recipe {_T['recipe']}, selected_on VARCHAR,
        fused_group VARCHAR, fused_size BIGINT, group_wall_s DOUBLE, group_energy_kwh DOUBLE,
        group_peak_mem_mib DOUBLE, loader_wait_s DOUBLE, gpu_shared BOOLEAN""",
    "evals": """
        run_id VARCHAR, split VARCHAR, overall DOUBLE, many DOUBLE, medium DOUBLE, few DOUBLE,
        precision DOUBLE, recall DOUBLE, f1 DOUBLE, worst_class DOUBLE, n_samples BIGINT""",
    "metrics": "run_id VARCHAR, step BIGINT, key VARCHAR, value DOUBLE, ts TIMESTAMP",
    # mem_mib: the run's processes' (per process); power_w, util_pct, energy_j: the device's (see ``shared``)
    "system": "run_id VARCHAR, ts TIMESTAMP, gpu_index BIGINT, mem_mib DOUBLE, power_w DOUBLE, "
              "util_pct DOUBLE, energy_j DOUBLE, gpu_uuid VARCHAR, shared BOOLEAN",
    # n_test, n_correct: the class's test images and how many were right (a confusion matrix's row sum and
    # diagonal), what the bootstrap intervals of lvmbench.store.intervals resample.
    "per_class": "run_id VARCHAR, split VARCHAR, class_id BIGINT, class_name VARCHAR, n_train BIGINT, "
                 "accuracy DOUBLE, n_test BIGINT, n_correct BIGINT",
    # Bookkeeping: what each stored run was built from (per file: size, mtime, inode, bytes read), so
    # that ingest skips unchanged runs and reads only the new lines of a running run.
    "run_sources": "run_id VARCHAR PRIMARY KEY, files JSON",
}

RESULT_TABLES = ("runs", "evals", "metrics", "system", "per_class")  # what runs hold; the rest is bookkeeping
COLUMNS = {name: [c.strip().split()[0] for c in body.split(",")] for name, body in TABLES.items()}
TYPES = {name: {c.strip().split()[0]: c.strip().split()[1] for c in body.split(",")} for name, body in TABLES.items()}


def ensure_schema(con) -> None:
    """Create missing tables; add columns a newer lvmbench defines to a database made by an older one,
    and widen the INTEGER columns an older one made to BIGINT."""
    for name, body in TABLES.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({body})")
        have = {row[0]: row[1] for row in con.execute(f"DESCRIBE {name}").fetchall()}
        for column in body.split(","):
            col = column.split()[0]
            if col not in have:
                con.execute(f"ALTER TABLE {name} ADD COLUMN {column.strip()}")
            elif have[col] == "INTEGER" and TYPES[name][col] == "BIGINT":
                con.execute(f"ALTER TABLE {name} ALTER COLUMN {col} SET DATA TYPE BIGINT")
