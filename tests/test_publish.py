"""Results others can read: the storage format, busy-database handling, exports, tables with spread."""
import contextlib
import os
import subprocess
import sys

import duckdb
import pytest

from lvmbench.errors import UserError
from lvmbench.store import open_readonly, open_writer, pending, storage
from lvmbench.store.ingest import ingest_dir
from lvmbench.store.schema import ensure_schema
from tests.test_store import counts, fake_run


def storage_tag(db) -> str:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT tags['storage_version'] FROM duckdb_databases() "
                           "WHERE database_name = current_database()").fetchone()[0]
    finally:
        con.close()


def test_new_results_file_is_in_the_format_duckdb_1x_reads(tmp_path):
    db = tmp_path / "r.duckdb"
    fake_run(tmp_path / "runs", "ce")
    with open_writer(db) as con:
        ingest_dir(con, tmp_path / "runs")
    assert storage.storage_number(db) == storage.READABLE_FORMAT == 64
    assert storage_tag(db) == "v1.0.0+"
    with open_writer(db):  # reopening for writing keeps the format
        pass
    assert storage.storage_number(db) == 64


@pytest.mark.skipif(not os.environ.get("LVMBENCH_OLD_DUCKDB_PYTHON"),
                    reason="set LVMBENCH_OLD_DUCKDB_PYTHON to a Python with duckdb 1.x to read the file with it")
def test_duckdb_1x_opens_the_results_file(tmp_path):
    db = tmp_path / "r.duckdb"
    fake_run(tmp_path / "runs", "ce", overall=61.5)
    with open_writer(db) as con:
        ingest_dir(con, tmp_path / "runs")
    out = subprocess.run([os.environ["LVMBENCH_OLD_DUCKDB_PYTHON"], "-c",
                          "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True);"
                          "print(duckdb.__version__, c.execute('SELECT overall FROM evals').fetchone()[0])",
                          str(db)], capture_output=True, text=True, check=True).stdout.split()
    assert out[0].startswith("1.") and float(out[1]) == 61.5


def test_a_v2_file_is_migrated_on_first_write_with_a_backup(tmp_path, capsys):
    runs, db = tmp_path / "runs", tmp_path / "r.duckdb"
    fake_run(runs, "ce", overall=55.0)
    fake_run(runs, "focal", overall=57.0)
    con = duckdb.connect(str(db))  # DuckDB 2.0's own default format, as lvmbench wrote it before
    ensure_schema(con)
    ingest_dir(con, runs)
    con.close()
    before = counts(db)
    assert storage.storage_number(db) != 64 and before["runs"] == 2

    with open_readonly(db):  # reading never migrates
        pass
    assert storage.storage_number(db) != 64
    with open_writer(db):
        pass
    backup = tmp_path / "r.v2-backup.duckdb"
    assert "DuckDB 1.x reads" in capsys.readouterr().err
    assert storage.storage_number(db) == 64 and storage.storage_number(backup) not in (None, 64)
    assert counts(db) == before == counts(backup)
    with open_readonly(db) as con:
        assert con.execute("SELECT method, overall FROM runs JOIN evals USING (run_id) ORDER BY method"
                           ).fetchall() == [("ce", 55.0), ("focal", 57.0)]
        # the primary key came along: ingesting again replaces, never duplicates
        assert con.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'runs' "
                           "AND constraint_type = 'PRIMARY KEY'").fetchone()[0] == 1
    with open_writer(db) as con:
        ingest_dir(con, runs)
    assert counts(db) == before
    assert not (tmp_path / "r.duckdb.migrating").exists()


def test_a_run_that_finds_the_database_busy_is_stored_by_the_next_write(tmp_path, capsys):
    from lvmbench.runs.scheduler import ingest_quietly

    runs, db = tmp_path / "runs", tmp_path / "r.duckdb"
    with open_writer(db):
        pass
    first, second = fake_run(runs, "ce"), fake_run(runs, "focal")
    holder = subprocess.Popen([sys.executable, "-c", (  # a notebook holding the file read-only
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=True);"
        "print('ready', flush=True); time.sleep(30)"), str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        import lvmbench.store.db as dbmod

        old, dbmod.LOCK_RETRY_S = dbmod.LOCK_RETRY_S, 0.3
        try:
            ingest_quietly(db, first)
        finally:
            dbmod.LOCK_RETRY_S = old
    finally:
        holder.kill()
        holder.wait()
    err = "".join(capsys.readouterr().err.split())  # rich wraps the line to the terminal
    assert f"lockedbyprocess{holder.pid}" in err and "thenextrunstored" in err
    assert [r.run_id for r in pending.waiting(db)] == [first.run_id]
    ingest_quietly(db, second)
    with open_readonly(db) as con:
        assert sorted(r[0] for r in con.execute("SELECT method FROM runs").fetchall()) == ["ce", "focal"]
    assert not pending.pending_file(db).exists()


# -- export DIR -------------------------------------------------------------------------------------

def stored(tmp_path, *methods_and_overall):
    runs, db = tmp_path / "runs", tmp_path / "r.duckdb"
    made = [fake_run(runs, m, seed=s, overall=o) for m, s, o in methods_and_overall]
    with open_writer(db) as con:
        ingest_dir(con, runs)
    return db, runs, made


def json_as_values(rows):
    """Rows with JSON text parsed: a JSON column exported as JSON Lines comes back with other spacing."""
    import json

    def value(v):
        if isinstance(v, str) and v[:1] in "{[":
            return json.loads(v)
        return v

    return [tuple(value(v) for v in row) for row in rows]


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_export_round_trips_every_table(tmp_path, fmt, capsys):
    from lvmbench import cli

    db, _, made = stored(tmp_path, ("ce", 0, 55.5), ("focal", 1, 57.25))
    out = tmp_path / "snapshot"
    assert cli.main(["export", str(out), "--format", fmt, "--results", str(db)]) == 0
    assert "exported" in capsys.readouterr().out
    back = duckdb.connect()
    back.execute(f"IMPORT DATABASE '{out}'")
    assert {t: back.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in counts(db)} == counts(db)
    with open_readonly(db) as con:  # every column of every row, as stored (JSON columns as the values they hold)
        for table in counts(db):
            assert json_as_values(back.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()) == \
                json_as_values(con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()), table
    assert back.execute("SELECT method, overall FROM runs JOIN evals USING (run_id) ORDER BY method").fetchall() \
        == [("ce", 55.5), ("focal", 57.25)]
    config_text = back.execute("SELECT config FROM runs WHERE method = 'focal'").fetchone()[0]
    assert __import__("json").loads(config_text) == made[1].spec()
    assert back.execute("SELECT class_name, accuracy FROM per_class LIMIT 1").fetchone() == ("zero", 99.0)
    assert back.execute("SELECT min(ts) FROM metrics").fetchone()[0].year == 2023


def test_export_refuses_a_folder_with_files_and_an_unknown_format(tmp_path, capsys):
    from lvmbench import cli

    db, _, _ = stored(tmp_path, ("ce", 0, 50.0))
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert cli.main(["export", str(out), "--results", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not an empty folder" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert cli.main(["export", str(tmp_path / "new"), "--results", str(tmp_path / "missing.duckdb")]) == 2
    assert not (tmp_path / "new").exists() and not (tmp_path / "missing.duckdb").exists()


def test_export_fills_an_empty_or_new_nested_folder_and_names_each_refusal(tmp_path, capsys, monkeypatch):
    """The folders ``export`` accepts (an empty one, a new one under new ones, a name with a quote), the
    default format, and the one-line reason of each refusal, word for word."""
    import errno
    from pathlib import Path

    from lvmbench import cli
    from lvmbench.store.export import export_database

    db, _, _ = stored(tmp_path, ("ce", 0, 50.0))
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "empty", tmp_path / "new" / "deeper" / "it's"):
        assert cli.main(["export", str(out), "--results", str(db)]) == 0
        back = duckdb.connect()
        back.execute("IMPORT DATABASE '{}'".format(str(out).replace("'", "''")))
        assert back.execute("SELECT method FROM runs").fetchall() == [("ce",)]
    export_database(db, tmp_path / "api")  # a Python caller's default: Parquet
    assert {p.suffix for p in (tmp_path / "api").iterdir()} == {".parquet", ".sql"}
    with pytest.raises(UserError) as refused:
        export_database(db, tmp_path / "xml", "xml")
    assert str(refused.value) == "--format xml: choose from parquet, csv, jsonl"
    capsys.readouterr()

    (tmp_path / "a-file").write_text("x")
    assert cli.main(["export", str(tmp_path / "a-file"), "--results", str(db)]) == 2
    assert capsys.readouterr().err == f"error: export {tmp_path / 'a-file'} is a file, not a folder\n"
    mkdir = Path.mkdir

    def denied(self, *args, **kwargs):
        if self.name == "denied":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", denied)
    assert cli.main(["export", str(tmp_path / "denied"), "--results", str(db)]) == 2
    assert capsys.readouterr().err == \
        f"error: export {tmp_path / 'denied'}: [Errno 13] Permission denied: '{tmp_path / 'denied'}'\n"


# -- mean ± std over seeds, LaTeX -----------------------------------------------------------------

def test_main_table_shows_the_sample_std_over_three_seeds(tmp_path):
    from lvmbench.render import fmt
    from lvmbench.store import tables

    db, _, _ = stored(tmp_path, ("ce", 0, 60.0), ("ce", 1, 62.0), ("ce", 2, 67.0), ("focal", 0, 58.0))
    with open_readonly(db) as con:
        table = tables.build(con, "main")
    ce, focal = table.rows
    # by hand: mean 63, deviations -3, -1, 4, sum of squares 26, sample variance 26 / 2 = 13
    assert ce[3] == 3 and ce[4] == pytest.approx(63.0) and ce[4].std == pytest.approx(13 ** 0.5)
    assert ce[4].n == 3 and fmt(ce[4]) == "63.00 ± 3.61"
    assert ce[6].std == pytest.approx(0.0)  # few is 10.0 for every seed
    assert focal[3] == 1 and focal[4].std is None and fmt(focal[4]) == "58.00"
    assert tables.best_per_column(table)["Overall"] == pytest.approx(63.0)


def test_backbones_table_shows_spread_and_costs_do_not(tmp_path):
    from lvmbench.store import tables

    db, _, _ = stored(tmp_path, ("ce", 0, 60.0), ("ce", 1, 64.0))
    with open_readonly(db) as con:
        by_backbone = tables.build(con, "backbones")
        memory = tables.build(con, "memory")
    assert by_backbone.rows[0][2].std == pytest.approx(8 ** 0.5)
    assert not hasattr(memory.rows[0][2], "std")


def test_csv_and_json_give_the_std_its_own_column(tmp_path):
    import io
    import json

    from rich.console import Console

    from lvmbench.render import print_table

    db, _, _ = stored(tmp_path, ("ce", 0, 60.0), ("ce", 1, 62.0), ("ce", 2, 67.0))
    buf = io.StringIO()
    print_table(db, "main", fmt_name="json", console=Console(file=buf, width=400))
    row = json.loads(buf.getvalue())[0]
    assert row["Overall"] == pytest.approx(63.0) and row["Overall std"] == pytest.approx(13 ** 0.5)
    buf = io.StringIO()
    print_table(db, "main", fmt_name="csv", console=Console(file=buf, width=400))
    header = buf.getvalue().splitlines()[0].split(",")
    assert header[:7] == ["Method", "Variant", "Backbone", "Seeds", "Overall", "Overall std", "Many"]


def test_latex_table_is_booktabs_with_one_row_per_method(tmp_path, capsys):
    import re

    from lvmbench import cli

    db, _, _ = stored(tmp_path, ("ce", 0, 60.0), ("ce", 1, 62.0), ("balanced_softmax", 0, 66.0),
                      ("zeroshot", 0, 40.0))
    assert cli.main(["table", "main", "--format", "latex", "--results", str(db)]) == 0
    tex = capsys.readouterr().out
    begins, ends = re.findall(r"\\begin\{(\w+)\}", tex), re.findall(r"\\end\{(\w+)\}", tex)
    assert begins == ["table", "tabular"] and ends == ["tabular", "table"]
    lines = tex.splitlines()
    body = lines[lines.index(r"\midrule") + 1:lines.index(r"\bottomrule")]
    assert lines.index(r"\toprule") < lines.index(r"\midrule")
    assert [row.split(" & ")[0] for row in body] == ["zeroshot", "ce", r"balanced\_softmax"]
    assert all(row.endswith(r" \\") and row.count(" & ") == 10 for row in body)
    assert r"61.00 $\pm$ 1.41" in body[1] and r"\textbf{66.00}" in body[2]
    assert tex.count("{") == tex.count("}") and "%" not in tex.replace(r"\%", "")


# -- scripting: --version, global flags after the command, run --json ------------------------------

def test_version_and_debug_after_the_command(capsys):
    from lvmbench import cli

    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"lvmbench {cli.version()}"
    assert cli.version()[0].isdigit()
    assert cli.build_parser().parse_args(["table", "main", "--debug"]).debug is True
    assert cli.build_parser().parse_args(["--debug", "table", "main"]).debug is True
    assert cli.build_parser().parse_args(["table", "main"]).debug is False
    with pytest.raises(UserError):  # --debug after the command re-raises, as before it
        cli.main(["table", "main", "--results", "/nonexistent/r.duckdb", "--debug"])


@pytest.mark.slow
def test_run_json_prints_one_object_and_nothing_else(store, capsys):
    import json

    from lvmbench import cli
    from tests.conftest import TINY

    results, runs = store
    assert cli.main(["run", "--headless", "--method", "ce", "--json", "--set", *TINY]) == 0
    out = json.loads(capsys.readouterr().out)  # the whole of stdout is one JSON object
    assert out["status"] == "finished" and (runs / out["run_id"]).is_dir()
    assert set(out["evaluations"]) == {"val", "test"} and 0 <= out["evaluations"]["test"]["overall"] <= 100
    assert out["cost"]["wall_s"] > 0 and out["cost"]["s_per_iter"] > 0
    with open_readonly(results) as con:
        assert con.execute("SELECT run_id FROM runs").fetchall() == [(out["run_id"],)]


# -- settings files, re-runs, list sweeps --------------------------------------------------------

SETTINGS = """
method = "focal"
seed = 3
"train.iters" = 40

[train]
lr = 0.01
nesterov = false

[loss]
gamma = 2
"""


def captured_run(monkeypatch, argv) -> dict:
    """The spec ``lvmbench run`` would train, captured where it starts (nothing trains)."""
    from lvmbench import cli, config
    from lvmbench.exec import runner

    seen = {}

    def fake(dataset, backbone, method, seed, data_root, pretrained, sets, overrides=None, **_):
        seen["spec"] = config.resolve(dataset, backbone, method, seed=seed, pretrained=pretrained,
                                      data_root=data_root, overrides={**(overrides or {}), **config.parse_sets(sets)})
        return {"status": "finished", "run_id": "x"}

    monkeypatch.setattr(runner, "run_headless", fake)
    assert cli.main(argv) == 0
    return seen["spec"]


def test_config_file_gives_the_spec_written_by_hand_and_set_wins(tmp_path, monkeypatch):
    from lvmbench import config

    settings = tmp_path / "settings.toml"
    settings.write_text(SETTINGS)
    by_hand = config.resolve("mnist-lt", "tiny-clip", "focal", seed=3, overrides={
        "train.iters": 40, "train.lr": 0.01, "train.nesterov": False, "loss.gamma": 2})
    assert captured_run(monkeypatch, ["run", "--headless", "--config", str(settings)]) == by_hand
    changed = captured_run(monkeypatch, ["run", "--headless", "--config", str(settings), "--seed", "5",
                                         "--set", "train.lr=0.05"])
    assert changed == {**by_hand, "seed": 5, "train.lr": 0.05}


def test_from_reruns_the_stored_spec_exactly_or_changed(tmp_path, monkeypatch):
    from lvmbench import config
    from lvmbench.runs import scheduler

    runs = tmp_path / "runs"
    spec = config.resolve("mnist-lt", "tiny-clip", "focal", seed=2,
                          overrides={"train.lr": 0.02, "loss.gamma": 1.5, "train.iters": 30})
    stored_run = scheduler.prepare(spec, runs)
    argv = ["run", "--headless", "--from", stored_run.run_id, "--runs-dir", str(runs)]
    assert captured_run(monkeypatch, argv) == spec
    again = captured_run(monkeypatch, argv + ["--seed", "7", "--set", "loss.gamma=3"])
    assert again == {**spec, "seed": 7, "loss.gamma": 3}
    assert config.config_hash(again) != config.config_hash(spec)


def test_from_a_two_stage_run_keeps_its_parent_only_when_unchanged(tmp_path, monkeypatch):
    from lvmbench import config
    from lvmbench.runs import scheduler

    runs = tmp_path / "runs"
    spec = {**config.resolve("mnist-lt", "tiny-clip", "crt", seed=0), "stage1.run_id": "mnist-lt-ce-parent"}
    stored_run = scheduler.prepare(spec, runs)
    argv = ["run", "--headless", "--from", stored_run.run_id, "--runs-dir", str(runs)]
    assert captured_run(monkeypatch, argv)["stage1.run_id"] == "mnist-lt-ce-parent"
    assert captured_run(monkeypatch, argv + ["--seed", "1"])["stage1.run_id"] is None  # found or trained anew


@pytest.mark.parametrize("argv, message", [
    (["--config", "{tmp}/missing.toml"], "--config {tmp}/missing.toml: no such file"),
    (["--config", "{tmp}/bad.toml"], "not valid TOML"),
    (["--config", "{tmp}/list.toml"], "train.lr is a list; a run takes one value"),
    (["--config", "{tmp}/typo.toml"], "typo.toml: unknown key 'train.lrr' (did you mean train.lr"),
    (["--from", "no-such-run"], "--from no-such-run: no such run"),
    (["--resume", "x", "--config", "{tmp}/bad.toml"], "--resume continues a run"),
])
def test_settings_file_errors_are_one_line_exit_2_nothing_stored(tmp_path, store, capsys, argv, message):
    from lvmbench import cli

    results, runs = store
    (tmp_path / "bad.toml").write_text("train.lr = = 1\n")
    (tmp_path / "list.toml").write_text("[train]\nlr = [0.01, 0.03]\n")
    (tmp_path / "typo.toml").write_text('"train.lrr" = 0.01\n')
    assert cli.main(["run", "--headless", *[a.format(tmp=tmp_path) for a in argv]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message.format(tmp=tmp_path) in err and len(err.splitlines()) == 1
    assert not results.exists() and not runs.exists()


def test_a_list_sweep_plans_the_full_grid(tmp_path, capsys):
    import itertools

    from lvmbench import cli
    from lvmbench.exec import sweep
    from lvmbench.exec.grid import expand
    from lvmbench.runs.plan import plan

    sets, swept = sweep.parse_set_grid(["train.lr=0.01,0.03", "loss.gamma=1,2", "train.iters=20"])
    assert sets == {"train.iters": 20} and swept == {"train.lr": [0.01, 0.03], "loss.gamma": [1, 2]}
    axes = sweep.build_axes(None, methods=["focal"], seeds=[0, 1], sets=sets, swept=swept)
    jobs = plan(expand(axes), tmp_path / "runs")
    combos = sorted((j.spec["train.lr"], j.spec["loss.gamma"], j.spec["seed"]) for j in jobs)
    assert combos == sorted(itertools.product([0.01, 0.03], [1, 2], [0, 1]))
    assert {j.spec["train.iters"] for j in jobs} == {20} and len({j.hash for j in jobs}) == 8
    assert cli.main(["sweep", "--method", "focal", "--set", "train.lr=0.01,0.03", "loss.gamma=1,2",
                     "--runs-dir", str(tmp_path / "runs"), "--dry-run"]) == 0
    out = "".join(capsys.readouterr().out.split())
    assert "4runs:4tostart" in out and "train.lr=0.03loss.gamma=2" in out
    assert not (tmp_path / "runs").exists()


def test_a_bad_list_is_one_line(tmp_path, capsys):
    from lvmbench import cli

    assert cli.main(["sweep", "--method", "ce", "--set", "train.lr=0.01,", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "--set train.lr=0.01,: an empty value in the list" in err and len(err.splitlines()) == 1
    assert cli.main(["sweep", "--method", "ce", "--set", "train.lr=0.01,x", "--dry-run"]) == 2
    assert "--set train.lr=x: expected float" in capsys.readouterr().err


# -- export mlflow -------------------------------------------------------------------------------

def test_mlflow_export_reads_back_through_mlflows_client_and_is_idempotent(tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow")
    import json

    from mlflow import MlflowClient

    from lvmbench import cli
    from lvmbench.catalog import CARBON_KG_PER_KWH
    from lvmbench.store.ingest import ingest_run

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow's file store: no database server needed
    db, runs, made = stored(tmp_path, ("ce", 0, 55.5), ("focal", 1, 57.25))
    made[1].append(made[1].system_file, {"ts": 1_700_000_030, "gpu_index": 0, "mem_mib": 900.0, "power_w": 250.0,
                                         "util_pct": 97.0, "energy_j": 10.0})  # a GPU's sample: named by its index
    made[0].write_status(status="killed")  # a killed run is a terminated MLflow run too
    with open_writer(db) as con:
        ingest_run(con, made[0])
        ingest_run(con, made[1])
    uri = (tmp_path / "mlruns").as_uri()
    argv = ["export", "mlflow", "--tracking-uri", uri, "--experiment", "lt", "--results", str(db)]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == f"mlflow: 2 run(s) created, 0 updated, 0 unchanged in experiment 'lt' at {uri}\n"

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("lt")
    by_id = {r.data.tags["lvmbench.run_id"]: r for r in client.search_runs([exp.experiment_id])}
    assert set(by_id) == {r.run_id for r in made}
    focal = by_id[made[1].run_id]
    spec = made[1].spec()
    tagged = ("dataset", "backbone", "pretrained", "method", "seed", "stage", "config_hash", "sweep_id", "parent_run_id",
              "recipe", "git_sha")
    with open_readonly(db) as con:  # every identifying column of the stored run is a tag (an empty one is none)
        row = dict(zip(tagged, con.execute(f"SELECT {', '.join(tagged)} FROM runs WHERE run_id = ?",
                                           [made[1].run_id]).fetchone()))
    expected = {f"lvmbench.{k}": str(v) for k, v in row.items() if k != "git_sha" and v is not None}
    assert {k: v for k, v in focal.data.tags.items() if k.startswith("lvmbench.") and k not in (
        "lvmbench.run_id", "lvmbench.fingerprint")} == expected and row["git_sha"] and row["stage"] is not None
    assert (focal.data.tags["mlflow.runName"], focal.data.tags["mlflow.source.git.commit"]) == (made[1].run_id,
                                                                                               row["git_sha"])
    gpu_power = client.get_metric_history(focal.info.run_id, "system/gpu_0_power_watts")
    final = client.get_metric_history(focal.info.run_id, "final/test/overall")
    assert [(m.timestamp, m.value) for m in gpu_power] == [(1_700_000_030_000, 250.0)]
    assert [(m.step, m.timestamp) for m in final] == [(made[1].status()["iters"], (1_700_000_060 + 1) * 1000)]
    assert {k: focal.data.metrics[k] for k in focal.data.metrics if k.startswith("system/gpu_0_")} == {
        "system/gpu_0_memory_usage_megabytes": 900.0, "system/gpu_0_power_watts": 250.0,
        "system/gpu_0_utilization_percentage": 97.0, "system/gpu_0_energy_joules": 10.0}
    assert focal.data.params == {k: str(v) for k, v in spec.items()}
    assert focal.data.metrics["final/test/overall"] == 57.25 and focal.data.metrics["final/test/few"] == 10.0
    assert focal.data.metrics["cost/wall_s"] == 60.0
    # every figure of the run's evaluation and of the cost table is there, with its value
    ev = json.loads((made[1].eval_dir / "test.json").read_text())
    assert {k: focal.data.metrics.get(f"final/test/{k}") for k in ev if k not in ("split", "n_samples")} == \
        {k: v for k, v in ev.items() if k not in ("split", "n_samples")}
    status = made[1].status()
    costs = ("wall_s", "s_per_iter", "peak_mem_mib", "avg_power_w", "energy_kwh")
    assert {k: focal.data.metrics.get(f"cost/{k}") for k in costs} == {k: status[k] for k in costs}
    assert focal.data.metrics["cost/co2_kg"] == pytest.approx(status["energy_kwh"] * CARBON_KG_PER_KWH)
    logged = {k for m in made[1].metrics() for k, v in m.items() if k not in ("step", "ts") and v is not None}
    assert logged and all(k in focal.data.metrics for k in logged)
    assert focal.info.status == "FINISHED" and focal.info.start_time == 1_700_000_000_000
    assert by_id[made[0].run_id].info.status == "KILLED" and by_id[made[0].run_id].info.end_time is not None
    assert focal.info.end_time == (1_700_000_060 + 1) * 1000
    history = client.get_metric_history(focal.info.run_id, "loss")
    assert [(m.step, m.value, m.timestamp) for m in history] == [(10, 1.5, 1_700_000_010_000)]
    assert [m.step for m in client.get_metric_history(focal.info.run_id, "val/overall")] == [20]
    assert "system/memory_usage_megabytes" in focal.data.metrics
    artifact = client.download_artifacts(focal.info.run_id, "per_class_test.csv", str(tmp_path / "dl"))
    assert open(artifact).read().splitlines() == ["class_id,class_name,n_train,accuracy", "0,zero,700,99.0"]

    assert cli.main(argv) == 0  # again: nothing new
    assert "0 run(s) created, 0 updated, 2 unchanged" in capsys.readouterr().out
    assert len(client.search_runs([exp.experiment_id])) == 2

    ev = json.loads((made[0].eval_dir / "test.json").read_text())  # a stored run changes (e.g. resumed)
    (made[0].eval_dir / "test.json").write_text(json.dumps({**ev, "overall": 56.0}))
    with open_writer(db) as con:
        ingest_run(con, made[0])
    assert cli.main(argv) == 0
    assert "0 run(s) created, 1 updated, 1 unchanged" in capsys.readouterr().out
    now = {r.data.tags["lvmbench.run_id"]: r for r in client.search_runs([exp.experiment_id])}
    assert len(now) == 2 and now[made[0].run_id].data.metrics["final/test/overall"] == 56.0



def test_mlflow_export_of_running_queued_and_failed_runs_from_a_store_without_configs(tmp_path, monkeypatch):
    """A running run (no end yet), a queued one (not started, no iterations recorded) and a failed one, from a
    store of an older lvmbench that kept no configs: each comes back through MLflow's client with its status,
    its figures stamped at its end (else its start, else the export's time) and at its last step, and no params."""
    pytest.importorskip("mlflow")
    import time

    from mlflow import MlflowClient

    from lvmbench import cli

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    db, _, (running, queued, failed) = stored(tmp_path, ("ce", 0, 50.0), ("focal", 1, 51.0),
                                              ("balanced_softmax", 2, 52.0))
    con = duckdb.connect(str(db))
    con.execute("UPDATE runs SET config = NULL")
    con.execute("UPDATE runs SET status = 'running', ended_at = NULL WHERE run_id = ?", [running.run_id])
    con.execute("UPDATE runs SET status = 'queued', ended_at = NULL, started_at = NULL, iters = NULL "
                "WHERE run_id = ?", [queued.run_id])
    con.execute("UPDATE runs SET status = 'failed' WHERE run_id = ?", [failed.run_id])
    con.execute("UPDATE metrics SET step = NULL WHERE key = 'loss'")  # a metric logged without a step
    con.close()
    uri = (tmp_path / "mlruns").as_uri()
    before = int(time.time() * 1000)
    assert cli.main(["export", "mlflow", "--tracking-uri", uri, "--results", str(db)]) == 0
    after = int(time.time() * 1000)

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("lvmbench")
    by_id = {r.data.tags["lvmbench.run_id"]: r for r in client.search_runs([exp.experiment_id])}
    got = {run.run_id: by_id[run.run_id] for run in (running, queued, failed)}
    assert {rid: (r.info.status, r.info.end_time) for rid, r in got.items()} == {
        running.run_id: ("RUNNING", None), queued.run_id: ("SCHEDULED", None),
        failed.run_id: ("FAILED", (1_700_000_060 + 2) * 1000)}
    assert all(r.data.params == {} for r in got.values())

    def final(run):  # (step, timestamp) of the run's final test accuracy and of its wall time
        mid = got[run.run_id].info.run_id
        return [(m.step, m.timestamp) for key in ("final/test/overall", "cost/wall_s")
                for m in client.get_metric_history(mid, key)]

    assert final(running) == [(300, 1_700_000_000_000)] * 2  # no end yet: its start
    assert final(failed) == [(300, (1_700_000_060 + 2) * 1000)] * 2
    (step, ts), again = final(queued)
    assert step == 0 and before <= ts <= after and again == (step, ts)  # never started: the export's time
    for run in (running, queued, failed):
        loss = client.get_metric_history(got[run.run_id].info.run_id, "loss")
        assert [(m.step, m.value, m.timestamp) for m in loss] == [(0, 1.5, 1_700_000_010_000)]


def test_mlflow_export_without_mlflow_is_one_line(tmp_path, monkeypatch, capsys):
    from lvmbench import cli

    db, _, _ = stored(tmp_path, ("ce", 0, 50.0))
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    assert cli.main(["export", "mlflow", "--results", str(db)]) == 2
    err = capsys.readouterr().err
    assert err == "error: MLflow is not installed: pip install 'lvmbench[mlflow]' (or mlflow-skinny)\n"


def test_mlflow_times_are_utc_milliseconds_in_any_time_zone(monkeypatch):
    """The store's timestamps are UTC (naive when DuckDB hands them over): MLflow's milliseconds since the epoch
    must not move with the machine's time zone; a number is already milliseconds."""
    import time
    from datetime import datetime

    from lvmbench.store.mlflow_export import _ms

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert _ms(datetime(2023, 11, 14, 22, 13, 20)) == 1_700_000_000_000
        assert (_ms(1_700_000_000_000), _ms(None)) == (1_700_000_000_000, None)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_tracking_server_is_tried_on_its_port_once_and_named_with_the_reason_it_failed(monkeypatch):
    """Before exporting to an HTTP(S) tracking server: one connection to its host and port (HTTPS 443, HTTP 80,
    localhost without a host) within the time limit, which also bounds MLflow's own requests (one retry);
    a refusal names the server and the reason, a silence says "no answer"."""
    import socket

    from lvmbench.store import mlflow_export

    tried, failure = [], {}

    def connect(address, timeout):
        tried.append((address, timeout))
        if "error" in failure:
            raise failure["error"]
        return contextlib.nullcontext()

    monkeypatch.setattr(socket, "create_connection", connect)
    for name in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
        monkeypatch.delenv(name, raising=False)
    for uri in ("https://mlflow.example", "http://mlflow.example", "http://:5000", "http://h:8080/x", "file:///tmp/m"):
        mlflow_export.check_reachable(uri)
    assert tried == [(("mlflow.example", 443), 10), (("mlflow.example", 80), 10), (("localhost", 5000), 10),
                     (("h", 8080), 10)]
    assert (os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"], os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) == ("10", "1")
    for error, why in ((ConnectionRefusedError(111, "Connection refused"), "Connection refused"),
                       (TimeoutError(), "no answer"), (ValueError("port out of range"), "port out of range")):
        failure["error"] = error
        with pytest.raises(UserError) as refused:
            mlflow_export.check_reachable("http://h:5000", timeout_s=2.5)
        assert str(refused.value) == f"mlflow: cannot reach the tracking server http://h:5000 within 2.5 s ({why})"


def test_a_database_tracking_store_without_its_packages_says_what_to_install(tmp_path, capsys):
    """mlflow-skinny (lvmbench's extra) has no SQLAlchemy: a database tracking URI fails with MLflow's reason
    and what to install; other stores never get that hint."""
    import importlib.util

    from lvmbench import cli
    from lvmbench.store.mlflow_export import _database_hint

    pytest.importorskip("mlflow")
    if importlib.util.find_spec("sqlalchemy") is not None:
        pytest.skip("the full mlflow package is installed: database stores work")
    db, _, _ = stored(tmp_path, ("ce", 0, 50.0))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert cli.main(["export", "mlflow", "--tracking-uri", uri, "--results", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: mlflow ({uri}): ") and len(err.splitlines()) == 1
    assert err.endswith(" (a database tracking store needs the full package: pip install mlflow)\n")
    hint = {uri: bool(_database_hint(uri)) for uri in ("postgresql://h/db", "mysql://h/db", "mssql://h/db",
                                                       "sqlite:///m.db", "file:///tmp/mlruns", "http://h:5000",
                                                       "/tmp/sqlite:x")}
    assert hint == {"postgresql://h/db": True, "mysql://h/db": True, "mssql://h/db": True, "sqlite:///m.db": True,
                    "file:///tmp/mlruns": False, "http://h:5000": False, "/tmp/sqlite:x": False}


# -- Slurm requeue and sweeps that continue interrupted runs ----------------------------------------

def ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def long_enough_spec():
    from lvmbench import config
    from tests.conftest import tiny

    return config.resolve("mnist-lt", "tiny-clip", "ce", overrides=config.parse_sets(
        tiny("train.iters=120", "ckpt.every=20", "train.eval_every=40")))


@pytest.mark.slow
def test_a_preempted_slurm_job_is_requeued_and_ends_with_the_numbers_of_an_uninterrupted_run(tmp_path):
    import signal
    import time

    submitit = pytest.importorskip("submitit")
    from lvmbench.runs import scheduler
    from lvmbench.exec.slurm import RunJob

    runs, spec = tmp_path / "runs", long_enough_spec()
    reference = scheduler.prepare(spec, runs)
    assert RunJob([str(reference.path)])()[0]["status"] == "finished"

    run = scheduler.prepare(spec, runs)
    executor = submitit.LocalExecutor(folder=str(tmp_path / "submitit"), max_num_timeout=2)
    executor.update_parameters(timeout_min=10)
    job = executor.submit(RunJob([str(run.path)]))
    deadline = time.monotonic() + 300
    while not (run.ckpt_dir / "last.pt").exists() or run.last_step() >= 100:
        assert time.monotonic() < deadline and not job.done(), job.stderr()
        time.sleep(0.05)
    os.kill(ppid(run.status()["pid"]), signal.SIGUSR2)  # what Slurm sends before preempting or timing out
    assert job.result()[0]["status"] == "finished", job.stderr()
    status = run.status()
    assert status["status"] == "finished" and status["resumes"] == 1
    assert "resuming from step" in run.log_file.read_text()
    assert run.evaluation("test") == reference.evaluation("test")
    assert run.evaluation("val") == reference.evaluation("val")


def test_a_sweep_run_again_continues_interrupted_runs_instead_of_starting_over(tmp_path):
    from lvmbench import config
    from lvmbench.exec import sweep
    from lvmbench.exec.grid import expand
    from lvmbench.runs.plan import PENDING, plan
    from lvmbench.runs.scheduler import prepare, start_or_continue

    runs, spec = tmp_path / "runs", long_enough_spec()
    killed = prepare(spec, runs)
    killed.ckpt_dir.mkdir(parents=True, exist_ok=True)
    (killed.ckpt_dir / "last.pt").write_bytes(b"checkpoint")
    killed.write_status(status="killed", error="killed by SIGKILL")
    axes = sweep.build_axes(None, methods=["ce"], sets={k: spec[k] for k in ("train.iters", "ckpt.every",
                                                                          "train.eval_every", "train.batch_size",
                                                                          "train.warmup_iters", "train.log_every",
                                                                          "train.threads")})
    [job] = plan(expand(axes), runs)
    assert job.hash == config.config_hash(spec) == killed.spec()["config_hash"]
    assert job.state == PENDING and job.run.run_id == killed.run_id and sweep.state_word(job).startswith("continue")
    run = start_or_continue(job.run, job.spec, runs)
    assert run.path == killed.path and run.status()["status"] == "queued" and run.status()["resumes"] == 1
    (killed.ckpt_dir / "last.pt").unlink()  # no checkpoint: nothing to continue, a new run starts
    killed.write_status(status="killed")
    [job] = plan(expand(axes), runs)
    assert job.run is None and sweep.state_word(job) == "new"


def test_from_with_another_method_or_recipe_takes_its_defaults_and_keeps_the_chosen_settings(tmp_path, monkeypatch):
    from lvmbench import config
    from lvmbench.runs import scheduler

    runs = tmp_path / "runs"
    spec = config.resolve("mnist-lt", "tiny-clip", "ldam", seed=0, overrides={"train.lr": 0.02, "train.iters": 30})
    stored_run = scheduler.prepare(spec, runs)
    argv = ["run", "--headless", "--from", stored_run.run_id, "--runs-dir", str(runs)]
    as_focal = captured_run(monkeypatch, argv + ["--method", "focal"])
    assert as_focal == config.resolve("mnist-lt", "tiny-clip", "focal", seed=0,
                                      overrides={"train.lr": 0.02, "train.iters": 30})
    as_reference = captured_run(monkeypatch, argv + ["--set", "recipe=reference"])
    assert as_reference == config.resolve("mnist-lt", "tiny-clip", "ldam", seed=0, overrides={
        "train.lr": 0.02, "train.iters": 30, "recipe": "reference"})


def test_the_settings_query_a_settings_sweep_points_to_keeps_the_settings_apart(tmp_path, capsys):
    import json

    from lvmbench import cli, config
    from lvmbench.exec import sweep
    from lvmbench.runs import scheduler

    runs, db = tmp_path / "runs", tmp_path / "r.duckdb"
    for lr, seed, overall in ((0.01, 0, 50.0), (0.01, 1, 52.0), (0.03, 0, 60.0)):
        run = scheduler.prepare(config.resolve("mnist-lt", "tiny-clip", "ce", seed=seed,
                                            overrides={"train.lr": lr}), runs)
        run.write_status(status="finished", ended_at=1_700_000_000 + seed)
        (run.eval_dir / "test.json").write_text(json.dumps({"split": "test", "overall": overall}))
    with open_writer(db) as con:
        ingest_dir(con, runs)
    assert cli.main(["sql", sweep.settings_query(["train.lr"]), "--format", "json", "--results", str(db)]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"method": "ce", "train.lr": "0.01", "seeds": 2, "overall": 51.0},
        {"method": "ce", "train.lr": "0.03", "seeds": 1, "overall": 60.0}]


def test_exports_read_a_results_file_of_an_older_lvmbench(tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow")
    from lvmbench import cli

    db, _, _ = stored(tmp_path, ("ce", 0, 55.0))
    con = duckdb.connect(str(db))
    con.execute("ALTER TABLE runs DROP COLUMN skipped_images")  # a column an older lvmbench did not write
    con.close()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    assert cli.main(["export", "mlflow", "--tracking-uri", uri, "--results", str(db)]) == 0
    assert cli.main(["export", str(tmp_path / "snap"), "--results", str(db)]) == 0
    assert "1 run(s) created" in capsys.readouterr().out


def test_the_compare_screen_shows_mean_and_std_in_a_cell():
    from lvmbench.store.spread import MeanStd
    from lvmbench.tui.widgets.table import cell

    text = cell("Overall", MeanStd(63.0, 13 ** 0.5, 3), best={"Overall": 63.0})
    assert text.plain == "63.00 ± 3.61" and text.justify == "right" and "bold" in str(text.style)
    assert cell("Overall", MeanStd(58.0, None, 1)).plain == "58.00"
