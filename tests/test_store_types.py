"""The types of the store's columns, read back from DuckDB's information_schema: an accuracy stored
as an integer, or a time as text, would silently round or break every table built on it."""
from lvmbench.store import open_writer

TEXT, FLOAT, TIME, JSON, BOOL = "VARCHAR", "DOUBLE", "TIMESTAMP", "JSON", "BOOLEAN"
INTEGRAL = ("INTEGER", "BIGINT")  # counts, steps, seeds and ids: any whole-number type

# Written here from what each column holds, not read from lvmbench.store.schema.
EXPECTED = {
    "runs": {
        **dict.fromkeys(["run_id", "sweep_id", "dataset", "backbone", "pretrained", "method", "parent_run_id",
                         "status", "config_hash", "git_sha", "device", "gpu_name", "error", "recipe",
                         "selected_on", "fused_group"], TEXT),
        **dict.fromkeys(["stage", "seed", "trainable_params", "total_params", "iters", "batch_size",
                         "skipped_images", "fused_size"], INTEGRAL),
        **dict.fromkeys(["wall_s", "s_per_iter", "peak_mem_mib", "avg_power_w", "energy_kwh", "co2_kg",
                         "group_wall_s", "group_energy_kwh", "group_peak_mem_mib", "loader_wait_s"], FLOAT),
        "config": JSON, "started_at": TIME, "ended_at": TIME, "gpu_shared": BOOL},
    "evals": {"run_id": TEXT, "split": TEXT, "n_samples": INTEGRAL,
              **dict.fromkeys(["overall", "many", "medium", "few", "precision", "recall", "f1", "worst_class"],
                              FLOAT)},
    "metrics": {"run_id": TEXT, "step": INTEGRAL, "key": TEXT, "value": FLOAT, "ts": TIME},
    "system": {"run_id": TEXT, "ts": TIME, "gpu_index": INTEGRAL, "gpu_uuid": TEXT, "shared": BOOL,
               **dict.fromkeys(["mem_mib", "power_w", "util_pct", "energy_j"], FLOAT)},
    "per_class": {"run_id": TEXT, "split": TEXT, "class_id": INTEGRAL, "class_name": TEXT, "n_train": INTEGRAL,
                  "accuracy": FLOAT, "n_test": INTEGRAL, "n_correct": INTEGRAL},
}


def test_every_result_column_has_the_type_of_what_it_holds(tmp_path):
    with open_writer(tmp_path / "r.duckdb") as con:
        found = con.execute("SELECT table_name, column_name, data_type FROM information_schema.columns "
                            "WHERE table_schema = 'main'").fetchall()
    types: dict[str, dict[str, str]] = {}
    for table, column, data_type in found:
        types.setdefault(table, {})[column] = data_type
    for table, columns in EXPECTED.items():
        assert set(types[table]) == set(columns), table
        for column, expected in columns.items():
            allowed = expected if isinstance(expected, tuple) else (expected,)
            assert types[table][column] in allowed, f"{table}.{column} is {types[table][column]}, not {expected}"
