import subprocess
import sys
import time

import pytest

from lvmbench import config
from lvmbench.errors import UserError
from lvmbench.runs.rundir import RunDir
from lvmbench.runs.scheduler import prepare
from lvmbench.store import open_readonly, open_writer, tables
from lvmbench.store.ingest import ingest_dir, ingest_run
from lvmbench.store.schema import COLUMNS, RESULT_TABLES


def fake_run(runs, method, seed=0, overall=50.0, few=10.0, backbone="tiny-clip", status="finished", energy=0.002):
    """A finished run directory as a training child would leave it (no training needed)."""
    spec = config.resolve("mnist-lt", backbone, method, seed=seed)
    run = prepare(spec, runs)
    run.write_status(status=status, started_at=1_700_000_000, ended_at=1_700_000_060 + seed, wall_s=60.0,
                     s_per_iter=0.2, peak_mem_mib=900.0, energy_kwh=energy, avg_power_w=120.0, stage=1,
                     trainable_params=1000, total_params=5000, iters=300, device="cpu")
    ev = {"split": "test", "overall": overall, "many": 90.0, "medium": 40.0, "few": few, "precision": 55.0,
          "recall": overall, "f1": 50.0, "worst_class": 1.0, "n_samples": 1000}
    (run.eval_dir / "test.json").write_text(__import__("json").dumps(ev))
    (run.eval_dir / "per_class_test.json").write_text(
        '[{"class_id": 0, "class_name": "zero", "n_train": 700, "accuracy": 99.0, "n_test": 100}]')
    run.append(run.metrics_file, {"step": 10, "loss": 1.5, "lr": 0.01, "ts": 1_700_000_010})
    run.append(run.metrics_file, {"step": 20, "val/overall": 40.0, "val/few": None, "ts": 1_700_000_020})
    run.append(run.system_file, {"ts": 1_700_000_010, "gpu_index": None, "mem_mib": 800.0, "power_w": None,
                                 "util_pct": None, "energy_j": None})
    return run


def counts(db):
    with open_readonly(db) as con:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in RESULT_TABLES}


def test_schema_has_the_documented_columns(tmp_path):
    with open_writer(tmp_path / "r.duckdb") as con:
        for table, cols in COLUMNS.items():
            assert [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()] == cols
    assert COLUMNS["evals"] == ["run_id", "split", "overall", "many", "medium", "few", "precision", "recall",
                                "f1", "worst_class", "n_samples"]


def test_ingest_is_idempotent(tmp_path):
    runs, db = tmp_path / "runs", tmp_path / "r.duckdb"
    run = fake_run(runs, "ce")
    with open_writer(db) as con:
        ingest_run(con, run)
    first = counts(db)
    assert first == {"runs": 1, "evals": 1, "metrics": 3, "system": 1, "per_class": 1}
    with open_writer(db) as con:
        ingest_dir(con, runs)
        ingest_run(con, run)
    assert counts(db) == first
    with open_readonly(db) as con:
        row = con.execute("SELECT status, stage, co2_kg, config_hash FROM runs").fetchone()
    assert row[0] == "finished" and row[1] == 1 and row[2] == pytest.approx(0.002 * 0.544)
    assert row[3] == run.spec()["config_hash"]


def test_main_table_orders_baselines_first_and_averages_seeds(tmp_path):
    runs, db = tmp_path / "runs", tmp_path / "r.duckdb"
    fake_run(runs, "balanced_softmax", seed=0, overall=60, few=30)
    fake_run(runs, "balanced_softmax", seed=1, overall=62, few=34)
    fake_run(runs, "ce", overall=55, few=5)
    fake_run(runs, "zeroshot", overall=40, few=40)
    fake_run(runs, "lade", overall=0, status="failed")
    with open_writer(db) as con:
        ingest_dir(con, runs)
    with open_readonly(db) as con:
        table = tables.build(con, "main", dataset="mnist-lt")
    assert [r[0] for r in table.rows] == ["zeroshot", "ce", "balanced_softmax"]
    bsm = table.rows[2]
    assert bsm[3] == 2 and bsm[4] == pytest.approx(61) and bsm[7] == pytest.approx(32)
    assert tables.best_per_column(table)["Few"] == 40


def test_cost_and_memory_tables(tmp_path):
    runs, db = tmp_path / "runs", tmp_path / "r.duckdb"
    fake_run(runs, "ce", energy=0.01)
    with open_writer(db) as con:
        ingest_dir(con, runs)
    with open_readonly(db) as con:
        cost = tables.build(con, "cost", carbon_kg_per_kwh=0.5)
        memory = tables.build(con, "memory")
    assert cost.columns[4] == "Trainable" and cost.rows[0][4] == 1000  # the run's trainable parameters
    assert cost.rows[0][5:] == [pytest.approx(0.2), None, pytest.approx(60 / 3600), pytest.approx(120.0),
                                pytest.approx(0.01), pytest.approx(0.005)]  # None: no loader wait recorded
    assert memory.columns == ["Method", "Variant", "tiny-clip"] and memory.rows == [["ce", "", 900.0]]


def test_readonly_needs_an_existing_database(tmp_path):
    with pytest.raises(UserError, match="no results database at"):
        with open_readonly(tmp_path / "missing.duckdb"):
            pass


def test_reads_while_nothing_writes(tmp_path):
    db = tmp_path / "r.duckdb"
    with open_writer(db):
        pass
    with open_readonly(db) as a, open_readonly(db) as b:
        assert a.execute("SELECT count(*) FROM runs").fetchone() == b.execute("SELECT count(*) FROM runs").fetchone()


def test_locked_database_names_the_holder(tmp_path):
    db = tmp_path / "r.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); c.execute('create table t(x int)');"
        "print('ready', flush=True); time.sleep(30)"), str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        start = time.monotonic()
        with pytest.raises(UserError, match=rf"is locked by process {holder.pid} "):
            with open_readonly(db, retry_s=0.5):
                pass
        assert time.monotonic() - start >= 0.5  # it retried before giving up
    finally:
        holder.kill()
        holder.wait()


def test_foreign_file_is_refused_and_kept(tmp_path):
    db = tmp_path / "notes.duckdb"
    db.write_text("my precious notes, not a database\n" * 5)
    before = db.read_bytes()
    for opener in (open_writer, open_readonly):
        with pytest.raises(UserError, match="is not a DuckDB database; refusing"):
            with opener(db):
                pass
    assert db.read_bytes() == before


def test_main_table_keeps_weights_apart(tmp_path):
    runs, db = tmp_path / "runs", tmp_path / "r.duckdb"
    for pretrained, overall in (("openai", 70.0), ("laion2b_s32b_b82k", 74.0)):
        spec = config.resolve("mnist-lt", "ViT-L-14", "ce", pretrained=pretrained)
        run = prepare(spec, runs)
        run.write_status(status="finished", ended_at=1_700_000_000, stage=1)
        (run.eval_dir / "test.json").write_text(__import__("json").dumps(
            {"split": "test", "overall": overall, "many": 1.0, "medium": 1.0, "few": 1.0, "precision": 1.0,
             "recall": 1.0, "f1": 1.0, "worst_class": 1.0, "n_samples": 10}))
    with open_writer(db) as con:
        ingest_dir(con, runs)
    with open_readonly(db) as con:
        rows = tables.build(con, "main").rows
    assert sorted((r[2], r[4]) for r in rows) == [("ViT-L-14", 70.0), ("ViT-L-14 (laion2b_s32b_b82k)", 74.0)]


def stored_runs_row(db, run_id):
    with open_readonly(db) as con:
        cur = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
        names = [d[0] for d in cur.description]
        return dict(zip(names, cur.fetchone()))


def test_every_runs_column_holds_the_field_of_the_run_files_it_names(tmp_path, monkeypatch):
    """Each column of ``runs`` read back from the store equals the field of spec.json or status.json it
    stands for. Every field holds a value of its own, even where a real run would not combine them (a
    status that contradicts its spec's stage, parent and group size wins), so a column filled from the
    wrong field, or from a fallback, fails; times are UTC whatever the machine's time zone."""
    import datetime
    import json
    import time

    spec = {**config.resolve("mnist-lt", "tiny-clip", "ce", seed=7), "stage1.run_id": "parent-in-spec"}
    run = prepare(spec, tmp_path / "runs", sweep_id="sweep-1", fused_group="group-1", fused_size=3)
    run.spec_file.write_text(json.dumps({**run.spec(), "config_hash": "hash-an-older-lvmbench-gave-it"}))
    run.write_status(status="finished", stage=1, parent_run_id="parent-in-status", fused_size=4, device="cuda:0",
                     gpu_name="H200",
                     trainable_params=1234, total_params=56789, iters=299, started_at=1_700_000_000,
                     ended_at=1_700_000_090, wall_s=90.5, s_per_iter=0.25, peak_mem_mib=901.5, avg_power_w=210.5,
                     energy_kwh=0.5, error="a note", skipped_images=4, selected_on="val", group_wall_s=270.5,
                     group_energy_kwh=1.5, group_peak_mem_mib=2701.5, loader_wait_s=0.0125, gpu_shared=True)
    db = tmp_path / "results.duckdb"
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        with open_writer(db) as con:
            ingest_run(con, run)
    finally:
        monkeypatch.undo()
        time.tzset()
    stored, written = stored_runs_row(db, run.run_id), run.spec()
    utc = lambda s: datetime.datetime.fromtimestamp(s, datetime.timezone.utc).replace(tzinfo=None)  # noqa: E731
    assert stored == {
        "run_id": run.run_id, "sweep_id": "sweep-1", "dataset": "mnist-lt", "backbone": "tiny-clip",
        "pretrained": spec["pretrained"], "method": "ce", "stage": 1, "parent_run_id": "parent-in-status", "seed": 7,
        "status": "finished", "config": stored["config"], "config_hash": "hash-an-older-lvmbench-gave-it",
        "git_sha": written["git_sha"], "device": "cuda:0", "gpu_name": "H200", "trainable_params": 1234,
        "total_params": 56789, "iters": 299, "batch_size": spec["train.batch_size"],
        "started_at": utc(1_700_000_000), "ended_at": utc(1_700_000_090), "wall_s": 90.5, "s_per_iter": 0.25,
        "peak_mem_mib": 901.5, "avg_power_w": 210.5, "energy_kwh": 0.5, "co2_kg": pytest.approx(0.5 * 0.544),
        "error": "a note", "skipped_images": 4, "recipe": spec["recipe"], "selected_on": "val",
        "fused_group": "group-1", "fused_size": 4, "group_wall_s": 270.5, "group_energy_kwh": 1.5,
        "group_peak_mem_mib": 2701.5, "loader_wait_s": 0.0125, "gpu_shared": True}
    assert json.loads(stored["config"]) == written  # the hash a run was made with is kept: sweeps match it


def test_runs_columns_fall_back_to_the_spec_when_the_status_does_not_say(tmp_path):
    """A stage-2 run whose status holds no stage, parent, iteration count, group size or group costs
    (an older lvmbench's, or one killed early) takes them from its spec and its own costs; no energy,
    no CO2."""
    spec = {**config.resolve("mnist-lt", "tiny-clip", "crt", seed=0), "stage1.run_id": "mnist-lt-ce-s0-parent"}
    run = prepare(spec, tmp_path / "runs")
    (run.path / "status.json").write_text('{"status": "killed", "wall_s": 12.5, "peak_mem_mib": 300.5}')
    db = tmp_path / "results.duckdb"
    with open_writer(db) as con:
        ingest_run(con, run)
    stored = stored_runs_row(db, run.run_id)
    assert {k: stored[k] for k in ("stage", "parent_run_id", "iters", "fused_group", "fused_size", "group_wall_s",
                                   "group_energy_kwh", "group_peak_mem_mib", "energy_kwh", "co2_kg",
                                   "started_at", "status")} == {
        "stage": 2, "parent_run_id": "mnist-lt-ce-s0-parent", "iters": spec["train.iters"], "fused_group": None,
        "fused_size": 1, "group_wall_s": 12.5, "group_energy_kwh": None, "group_peak_mem_mib": 300.5,
        "energy_kwh": None, "co2_kg": None, "started_at": None, "status": "killed"}
    # a stage-1 run whose status says neither its state nor its stage, and whose spec lost its hash
    spec = config.resolve("mnist-lt", "tiny-clip", "ce", seed=1)
    bare = prepare(spec, tmp_path / "runs", fused_group="group-2", fused_size=2)
    (bare.path / "status.json").write_text('{"wall_s": 5.0, "energy_kwh": 0.25}')
    written = {k: v for k, v in bare.spec().items() if k != "config_hash"}
    bare.spec_file.write_text(__import__("json").dumps(written))
    with open_writer(db) as con:
        ingest_run(con, bare)
    stored = stored_runs_row(db, bare.run_id)
    assert {k: stored[k] for k in ("stage", "status", "config_hash", "fused_size", "group_energy_kwh", "co2_kg")} == {
        "stage": 1, "status": "queued", "config_hash": config.config_hash(written), "fused_size": 2,
        "group_energy_kwh": 0.25,
        "co2_kg": pytest.approx(0.25 * 0.544)}
