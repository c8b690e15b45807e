"""The schema of ``results.duckdb`` (accuracies in percent, as in the study's tables)."""
from __future__ import annotations

TABLES = {
    "runs": """
        run_id VARCHAR PRIMARY KEY, sweep_id VARCHAR, dataset VARCHAR, backbone VARCHAR, pretrained VARCHAR,
        method VARCHAR, stage INTEGER, parent_run_id VARCHAR, seed INTEGER, status VARCHAR, config JSON,
        config_hash VARCHAR, git_sha VARCHAR, device VARCHAR, gpu_name VARCHAR, trainable_params BIGINT,
        total_params BIGINT, iters INTEGER, batch_size INTEGER, started_at TIMESTAMP, ended_at TIMESTAMP,
        wall_s DOUBLE, s_per_iter DOUBLE, peak_mem_mib DOUBLE, avg_power_w DOUBLE, energy_kwh DOUBLE,
        co2_kg DOUBLE, error VARCHAR, skipped_images INTEGER, recipe VARCHAR, selected_on VARCHAR,
        fused_group VARCHAR, fused_size INTEGER, group_wall_s DOUBLE, group_energy_kwh DOUBLE,
        group_peak_mem_mib DOUBLE""",
    "evals": """
        run_id VARCHAR, split VARCHAR, overall DOUBLE, many DOUBLE, medium DOUBLE, few DOUBLE,
        precision DOUBLE, recall DOUBLE, f1 DOUBLE, worst_class DOUBLE, n_samples INTEGER""",
    "metrics": "run_id VARCHAR, step INTEGER, key VARCHAR, value DOUBLE, ts TIMESTAMP",
    "system": "run_id VARCHAR, ts TIMESTAMP, gpu_index INTEGER, mem_mib DOUBLE, power_w DOUBLE, "
              "util_pct DOUBLE, energy_j DOUBLE",
    "per_class": "run_id VARCHAR, split VARCHAR, class_id INTEGER, class_name VARCHAR, n_train INTEGER, "
                 "accuracy DOUBLE",
}

COLUMNS = {name: [c.strip().split()[0] for c in body.split(",")] for name, body in TABLES.items()}


def ensure_schema(con) -> None:
    """Create missing tables; add columns a newer lvmbench defines to a database made by an older one."""
    for name, body in TABLES.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({body})")
        have = {row[0] for row in con.execute(f"DESCRIBE {name}").fetchall()}
        for column in body.split(","):
            if column.split()[0] not in have:
                con.execute(f"ALTER TABLE {name} ADD COLUMN {column.strip()}")
