"""Hardening against careless and hostile use: a SQL console that cannot write, output that prints
the data as it is, `--resume` that trusts nothing, hyper-parameters checked before anything is
created, and one line (never a traceback) when the disk, the database or a path is bad."""
from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest
from rich.console import Console

from lvmbench import cli, config, paths
from lvmbench.runs import plan
from lvmbench.errors import UserError
from lvmbench.render import render
from lvmbench.runs.rundir import RunDir
from lvmbench.store import open_writer
from lvmbench.store.ingest import ingest_run

from .conftest import TINY


def make_run(runs, method="ce", **extra):
    spec = config.resolve("mnist-lt", "tiny-clip", method, overrides={**config.parse_sets(TINY), **extra})
    return plan.prepare(spec, runs)


def fake_results(path: Path, metrics: int = 0) -> Path:
    """A results database with one stored run (and ``metrics`` metric rows)."""
    with open_writer(path) as con:
        con.execute("INSERT INTO runs (run_id, dataset, backbone, method, seed, status) "
                    "VALUES ('r1', 'mnist-lt', 'tiny-clip', 'ce', 0, 'finished')")
        con.execute("INSERT INTO evals (run_id, split, overall, few) VALUES ('r1', 'test', 80.5, 40.25)")
        if metrics:
            con.execute(f"INSERT INTO metrics SELECT 'r1', i, 'loss', i / 7, NULL FROM range({metrics}) t(i)")
    return path


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) with its SHA-256, and every folder."""
    out = {}
    for path in sorted(Path(root).rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "<dir>"
    return out


def one_line_error(capsys, code, expected_code=2, contains=""):
    err = capsys.readouterr().err
    assert code == expected_code, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("error: ") and contains in err, err
    return err


# -- item 2: the SQL console never writes -------------------------------------------------------------

@pytest.fixture
def console_world(tmp_path, monkeypatch):
    """A store, a second database, a run directory and an empty HOME (where DuckDB keeps extensions and
    secrets), all under tmp_path so that their checksums tell whether anything was written."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    db = fake_results(tmp_path / "results" / "results.duckdb")
    other = duckdb.connect(str(tmp_path / "other.duckdb"))
    other.execute("CREATE TABLE t AS SELECT 1 AS x")
    other.close()
    run = make_run(tmp_path / "runs")
    (tmp_path / "data.csv").write_text("a,b\n1,x\n2,y\n")
    return tmp_path, db, run


WRITES = [
    "ATTACH '{tmp}/other.duckdb' AS o (READ_WRITE); DROP TABLE o.t",
    "ATTACH '{tmp}/fresh.duckdb' AS f",
    "ATTACH ':memory:' AS m",
    "DETACH results",
    "COPY (SELECT 'x' AS status) TO '{run}/status.json' (FORMAT json)",
    "COPY runs TO '{tmp}/runs.parquet' (FORMAT parquet)",
    "COPY FROM DATABASE results TO other",
    "EXPORT DATABASE '{tmp}/dump'",
    "INSTALL httpfs",
    "FORCE INSTALL json",
    "LOAD parquet",
    "UPDATE EXTENSIONS",
    "CREATE PERSISTENT SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "SET enable_external_access = true",
    "SET allowed_directories = ['/']",
    "SET lock_configuration = false",
    "RESET lock_configuration",
    "SET autoinstall_known_extensions = true",
    "SET temp_directory = '{tmp}/spill'",
    "SET profiling_output = '{tmp}/profile.json'",
    "PRAGMA enable_profiling",
    "CALL enable_logging()",
    "CHECKPOINT",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO '{tmp}/explained.csv'",
    "SELECT 1; COPY (SELECT 1) TO '{tmp}/second.csv'",
    "CREATE TABLE t AS SELECT 1",
    "CREATE TEMP TABLE t AS SELECT 1",
    "CREATE MACRO m(x) AS x",
    "INSERT INTO runs (run_id) VALUES ('intruder')",
    "UPDATE runs SET seed = 7",
    "DELETE FROM evals",
    "DROP TABLE per_class",
    "ALTER TABLE runs ADD COLUMN z INTEGER",
    "VACUUM",
    "BEGIN TRANSACTION",
    "USE memory",
]

# Queries that parse as SELECT but would switch the locked settings (DuckDB refuses them itself).
LOCKED = [
    "SELECT * FROM enable_logging(storage := 'file', storage_path := '{tmp}/logs')",
    "SELECT * FROM enable_profiling()",
    "SELECT * FROM query('COPY (SELECT 1) TO ''{tmp}/q.csv''')",
]


@pytest.mark.parametrize("sql", WRITES + LOCKED)
def test_sql_console_refuses_every_write_with_one_line(console_world, capsys, sql):
    tmp, db, run = console_world
    before = tree_digest(tmp)
    code = cli.main(["sql", sql.format(tmp=tmp, run=run.path), "--results", str(db)])
    err = one_line_error(capsys, code)
    assert "refused" in err or "SQL error" in err
    assert tree_digest(tmp) == before


def test_sql_console_of_the_ui_refuses_the_same_writes(console_world):
    from lvmbench.tui.results import Results

    tmp, db, run = console_world
    before = tree_digest(tmp)
    results = Results(db)
    for sql in WRITES + LOCKED:
        with pytest.raises(UserError):
            results.console(sql.format(tmp=tmp, run=run.path))
    assert results.console("SELECT count(*) AS n FROM runs").rows == [[1]]
    assert tree_digest(tmp) == before


def test_sql_console_reads_the_store_and_files(console_world, capsys):
    tmp, db, run = console_world
    before = tree_digest(tmp)
    for sql, expected in [("FROM runs SELECT run_id", [{"run_id": "r1"}]),
                          ("DESCRIBE evals", None),
                          (f"SELECT b FROM read_csv('{tmp}/data.csv') ORDER BY a", [{"b": "x"}, {"b": "y"}]),
                          ("SELECT current_setting('lock_configuration') AS locked, "
                           "current_setting('autoinstall_known_extensions') AS install", [
                               {"locked": True, "install": False}])]:
        assert cli.main(["sql", sql, "--results", str(db), "--format", "json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert expected is None or out == expected
    assert tree_digest(tmp) == before


# -- item 3: output prints the data as it is ------------------------------------------------------------

NASTY = ["[red]hi[/red]", "[/]", ":x: :thumbs_up:", "[Errno 2] no such file", "a|b", "two\nlines", "back\\slash"]


def rendered(fmt_name, columns, rows, width=200, terminal=False, **kw) -> str:
    buf = io.StringIO()
    render(columns, rows, fmt_name, console=Console(file=buf, width=width, force_terminal=terminal), **kw)
    return buf.getvalue()


def test_csv_prints_values_literally():
    import csv

    out = rendered("csv", ["text"], [[v] for v in NASTY])
    assert [r[0] for r in csv.reader(io.StringIO(out))] == ["text", *NASTY]


@pytest.mark.parametrize("terminal", [False, True])
def test_table_prints_markup_and_emoji_codes_literally(terminal):
    out = rendered("table", ["text", "n"], [[v.replace("\n", " "), i] for i, v in enumerate(NASTY)],
                   terminal=terminal)
    if terminal:
        import re

        out = re.sub(r"\x1b\[[0-9;]*m", "", out)
    for value in NASTY:
        assert value.replace("\n", " ") in out, value


def test_column_names_and_titles_are_not_markup():
    out = rendered("table", ["[b]x[/b]", "[/]"], [[1, 2]], title="run [red]a[/red]")
    assert "[b]x[/b]" in out and "[/]" in out and "[red]a[/red]" in out


@pytest.mark.parametrize("terminal", [False, True])
def test_a_narrow_output_drops_no_column(terminal, capsys):
    columns = [f"column_{i}" for i in range(12)]
    row = [f"value-{i}-{'x' * 6}" if i % 2 else 1000 + i for i in range(12)]
    out = rendered("table", columns, [row], width=40, terminal=terminal)
    if not terminal:  # piped: the table at its full width, one line per row
        for c, v in zip(columns, row):
            assert c in out and str(v) in out
    else:  # a terminal: lines wrap (numbers never), and a note says so
        for v in row[::2]:
            assert str(v) in out
        assert "note: the table needs" in capsys.readouterr().err


def test_a_terminal_narrower_than_the_table_wraps_text_but_keeps_numbers():
    out = rendered("table", ["name", "score"], [["a long name that will have to wrap", 12.5]], width=24,
                   terminal=True)
    assert "12.5" in out and "wrap" in out


def test_json_is_valid_with_null_for_nan_and_infinity():
    rows = [[float("nan"), float("inf"), -float("inf"), 1.5, [float("nan"), 2.0], "[red]x", None]]
    out = rendered("json", list("abcdefg"), rows)

    def refuse(token):
        raise ValueError(token)

    assert json.loads(out, parse_constant=refuse) == [
        {"a": None, "b": None, "c": None, "d": 1.5, "e": [None, 2.0], "f": "[red]x", "g": None}]


def test_markdown_escapes_pipes_and_line_breaks():
    out = rendered("markdown", ["a|b", "c"], [["x|y", "one\ntwo"], ["back\\slash", None]], exact=True)
    lines = out.strip().splitlines()
    assert len(lines) == 4
    assert lines[0] == "| a\\|b | c |"
    assert lines[2] == "| x\\|y | one<br>two |"
    assert lines[3] == "| back\\\\slash | NULL |"


def test_sql_prints_every_digit(console_world, capsys):
    tmp, db, run = console_world
    sql = "SELECT 0.1234567890123::DOUBLE AS x, 80.5 AS y, NULL AS z, '[/]' AS w"
    assert cli.main(["sql", sql, "--results", str(db)]) == 0
    out = capsys.readouterr().out
    assert "0.1234567890123" in out and "80.5" in out and "NULL" in out and "[/]" in out


def test_error_text_in_brackets_is_printed(tmp_path, capsys):
    from lvmbench.runner import print_outcome

    run = make_run(tmp_path / "runs")
    status = run.write_status(status="failed", error="OSError: [Errno 28] No space left on device [/]")
    print_outcome(run, status, tmp_path / "db.duckdb")
    out = capsys.readouterr().out
    assert "OSError: [Errno 28] No space left on device [/]" in out


# -- item 5: --resume trusts nothing --------------------------------------------------------------------

@pytest.mark.parametrize("bad_id", ["../elsewhere/{id}", "{id}/", "/tmp/{id}", "..", "sub/../{id}"])
def test_resume_takes_a_run_id_not_a_path(tmp_path, capsys, bad_id):
    runs = tmp_path / "runs"
    run = make_run(runs)
    run.write_status(status="failed")
    copy = tmp_path / "elsewhere" / run.run_id
    copy.parent.mkdir()
    os.symlink(run.path, copy)
    before = tree_digest(runs)
    code = cli.main(["run", "--headless", "--resume", bad_id.format(id=run.run_id), "--runs-dir", str(runs),
                     "--results", str(tmp_path / "r.duckdb")])
    one_line_error(capsys, code, contains="--resume")
    assert tree_digest(runs) == before and not (tmp_path / "r.duckdb").exists()


@pytest.mark.parametrize("file,content,why", [
    ("status.json", "{\"status\": \"fail", "status.json is not valid JSON"),
    ("status.json", "[\"failed\"]", "status.json is not a JSON object"),
    ("status.json", b"\xff\xfe", "status.json is not UTF-8"),
    ("spec.json", "{", "spec.json is not valid JSON"),
])
def test_resume_refuses_a_run_whose_files_cannot_be_read(tmp_path, capsys, file, content, why):
    runs = tmp_path / "runs"
    run = make_run(runs)
    target = run.path / file
    target.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = tree_digest(runs)
    code = cli.main(["run", "--headless", "--resume", run.run_id, "--runs-dir", str(runs),
                     "--results", str(tmp_path / "r.duckdb")])
    one_line_error(capsys, code, contains=why)
    assert tree_digest(runs) == before


# -- item 6: hyper-parameters are checked before anything is created -----------------------------------

@pytest.mark.parametrize("method,setting,message", [
    ("ce", "train.lr=inf", "train.lr=inf: must be a finite number"),
    ("ce", "train.lr=-Infinity", "train.lr=-inf: must be a finite number"),
    ("ce", "train.weight_decay=nan", "train.weight_decay=nan: must be a finite number"),
    ("ce", "head.scale=1e999", "head.scale=inf: must be a finite number"),
    ("ce", "decoder.mlp_ratio=NaN", "decoder.mlp_ratio=nan: must be a finite number"),
    ("focal", "loss.gamma=-0.5", "loss.gamma=-0.5: must be >= 0 (focal)"),
    ("focal", "loss.gamma=inf", "loss.gamma=inf: must be >= 0 (focal)"),
    ("focal", "loss.gamma=none", "loss.gamma=None: must be a number (focal)"),
    ("ldam", "loss.s=0", "loss.s=0: must be > 0 (ldam)"),
    ("ldam", "loss.drw_start=1.01", "loss.drw_start=1.01: must be in [0, 1] (ldam)"),
    ("cbw", "loss.beta=1", "loss.beta=1: must be in [0, 1) (cbw)"),
    ("lade", "loss.alpha=nan", "loss.alpha=nan: must be >= 0 (lade)"),
    ("grw", "loss.rho=-1", "loss.rho=-1: must be >= 0 (grw)"),
    ("logit_adjust", "loss.tau=-inf", "loss.tau=-inf: must be >= 0 (logit_adjust)"),
    ("ce", "decoder.heads=6", "decoder.heads=6: must divide the token width 64 of tiny-clip"),
    ("marc", "decoder.heads=5", "decoder.heads=5: must divide the token width 64 of tiny-clip"),
])
def test_out_of_range_values_are_refused_before_anything_exists(store, capsys, method, setting, message):
    results, runs = store
    code = cli.main(["run", "--headless", "--method", method, "--set", *TINY, setting])
    one_line_error(capsys, code, contains=message)
    assert not results.exists() and not runs.exists()


def test_every_loss_hyper_parameter_has_its_range_next_to_its_default():
    from lvmbench.methods.losses import LOSSES, build_loss

    for name, info in LOSSES.items():
        assert set(info.ranges) == set(info.defaults), name
        for defaults in (info.defaults, *info.recipe_defaults.values()):
            for hp, default in defaults.items():
                assert default is None or default in info.ranges[hp], (name, hp)
    with pytest.raises(ValueError, match="gamma=-1: must be >= 0"):
        build_loss("focal", [10, 5], gamma=-1)


def test_in_range_edges_are_accepted():
    for beta in ("0", "0.9999"):
        config.resolve("mnist-lt", "tiny-clip", "cbw", overrides=config.parse_sets([f"loss.beta={beta}"]))
    config.resolve("mnist-lt", "tiny-clip", "ldam", overrides=config.parse_sets(["loss.drw_start=1", "loss.max_m=0"]))
    config.resolve("mnist-lt", "tiny-clip", "focal", overrides=config.parse_sets(["loss.gamma=0"]))


# -- item 7: one line instead of a traceback ------------------------------------------------------------

@pytest.mark.parametrize("sql", ["", "   ", " ; ; ", "-- only a comment"])
def test_empty_sql_is_one_line(console_world, capsys, sql):
    tmp, db, run = console_world
    one_line_error(capsys, cli.main(["sql", sql, "--results", str(db)]), contains="empty query")


@contextmanager
def read_only_folder(tmp_path):
    """A folder nobody can write to: a read-only tmpfs where we may mount one, else chmod 555."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = False
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                                 capture_output=True).returncode == 0
        if not mounted:
            pytest.skip("root without mount: a chmod'ed folder stays writable")
    else:
        folder.chmod(0o555)
    try:
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)
        else:
            folder.chmod(0o755)


def test_runs_dir_that_is_a_file_or_under_one_is_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for runs in (afile, afile / "sub" / "runs"):
        for command in (["run", "--headless"], ["sweep", "--method", "ce,lws", "--seed", "0,1"]):
            code = cli.main([*command, "--runs-dir", str(runs), "--results", str(tmp_path / "r.duckdb"),
                             "--set", *TINY])
            one_line_error(capsys, code, contains="is a file, not a folder")
    assert afile.read_text() == "x" and not (tmp_path / "r.duckdb").exists()


def test_results_under_a_file_is_refused_before_training(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    code = cli.main(["run", "--headless", "--runs-dir", str(tmp_path / "runs"), "--results",
                     str(afile / "r.duckdb"), "--set", *TINY])
    one_line_error(capsys, code, contains="--results")
    assert not (tmp_path / "runs").exists()


def test_read_only_runs_dir_and_results_are_refused_before_training(tmp_path, capsys):
    with read_only_folder(tmp_path) as ro:
        for args in (["--runs-dir", str(ro / "runs"), "--results", str(tmp_path / "r.duckdb")],
                     ["--runs-dir", str(tmp_path / "runs"), "--results", str(ro / "r.duckdb")]):
            code = cli.main(["run", "--headless", *args, "--set", *TINY])
            one_line_error(capsys, code, contains="cannot write to")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "r.duckdb").exists()


def truncated_copy(tmp_path) -> Path:
    db = fake_results(tmp_path / "whole.duckdb", metrics=300)
    cut = tmp_path / "cut.duckdb"
    data = db.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    return cut


def test_a_truncated_database_is_one_line(tmp_path, capsys):
    cut = truncated_copy(tmp_path)
    for args in (["table", "main"], ["table", "cost"], ["sql", "SELECT * FROM metrics"]):
        code = cli.main([*args, "--results", str(cut)])
        one_line_error(capsys, code, expected_code=1 if args[0] == "table" else 2, contains=str(cut))


def test_a_truncated_database_costs_the_run_nothing_but_fails_the_command(tmp_path, capsys):
    from lvmbench.runner import NotStored, check_stored, ingest_quietly

    cut = truncated_copy(tmp_path)
    run = make_run(tmp_path / "runs")
    status = run.write_status(status="finished")
    why = ingest_quietly(cut, run)
    assert why and ("damaged" in why or "Could not read" in why)
    assert "not stored" in capsys.readouterr().err
    with pytest.raises(NotStored, match=f"run {run.run_id} finished but is not stored"):
        check_stored(run, {**status, "not_stored": why}, cut)
    assert run.status()["status"] == "finished"


class FullDisk:
    """A connection whose COMMIT finds the disk full, after which ROLLBACK fails too (as DuckDB's does)."""

    def __init__(self, con):
        self.con = con

    def execute(self, sql, *args):
        if sql == "COMMIT":
            raise duckdb.IOException('IO Error: Could not write file "results.duckdb": No space left on device')
        if sql == "ROLLBACK":
            raise duckdb.TransactionException("TransactionContext Error: cannot rollback - no transaction is active")
        return self.con.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.con, name)


def test_a_full_disk_is_reported_not_hidden_by_rollback(tmp_path):
    from lvmbench.store.db import transaction

    with open_writer(tmp_path / "r.duckdb") as con:
        with pytest.raises(duckdb.IOException, match="No space left on device"):
            with transaction(FullDisk(con)):
                con.execute("INSERT INTO runs (run_id) VALUES ('r')")


@contextmanager
def tiny_disk(tmp_path):
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                                           capture_output=True).returncode:
        pytest.skip("needs a tmpfs mount (root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_real_full_disk_under_the_database_is_one_line(tmp_path, capsys):
    run = make_run(tmp_path / "runs")
    run.write_status(status="finished")
    for step in range(300):
        run.append(run.metrics_file, {"step": step, "loss": step / 3, "lr": 0.1})
    with tiny_disk(tmp_path) as disk:
        db = disk / "r.duckdb"
        with open_writer(db):
            pass
        with open(disk / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        code = cli.main(["ingest", str(run.path), "--results", str(db)])
        err = capsys.readouterr().err
        assert code != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert "No space left on device" in err and "cannot rollback" not in err


def non_utf8(tmp_path, name=b"r\xff.duckdb") -> Path:
    return Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), name)))


def test_a_non_utf8_results_path_is_one_line(tmp_path, capsys):
    db = non_utf8(tmp_path)
    fake_results(tmp_path / "ok.duckdb")
    db.write_bytes((tmp_path / "ok.duckdb").read_bytes())
    for args in (["sql", "SELECT 1"], ["table", "main"], ["ingest", str(tmp_path)],
                 ["run", "--headless", "--runs-dir", str(tmp_path / "runs"), "--set", *TINY]):
        code = cli.main([*args, "--results", str(db)])
        one_line_error(capsys, code, contains="UTF-8")
    assert not (tmp_path / "runs").exists()


def test_ctrl_c_interrupts_a_long_query(tmp_path):
    db = fake_results(tmp_path / "r.duckdb")
    proc = subprocess.Popen([sys.executable, "-m", "lvmbench", "sql", "--results", str(db),
                             "SELECT sum(hash(i)) FROM range(1000000000000) t(i)"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4)  # started, and deep inside DuckDB
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130 and err.strip() == "interrupted", err
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (1,)


# -- item 8: the resume hint works as printed; a run that is not stored fails its command ----------------

def test_resume_hint_names_runs_dir_and_results(tmp_path, capsys):
    import shlex

    from lvmbench.runner import print_outcome

    runs, db = tmp_path / "my runs", tmp_path / "my results.duckdb"
    run = make_run(runs)
    status = run.write_status(status="killed", error="killed by SIGKILL")
    print_outcome(run, status, db)
    hint = [line for line in capsys.readouterr().out.splitlines() if "--resume" in line][0]
    argv = shlex.split(hint.split(": ", 1)[1])
    args = cli.build_parser().parse_args(argv[1:])
    assert args.resume == run.run_id
    assert paths.runs_dir(args.runs_dir) == runs and paths.results_path(args.results) == db
    assert paths.resume_command("x", Path("runs"), Path("results/results.duckdb")) == \
        "lvmbench run --headless --resume x"


@pytest.mark.slow
def test_a_finished_run_that_cannot_be_stored_exits_non_zero_and_keeps_its_directory(tmp_path):
    cut = truncated_copy(tmp_path)
    out = subprocess.run([sys.executable, "-m", "lvmbench", "run", "--headless", "--runs-dir",
                          str(tmp_path / "runs"), "--results", str(cut), "--set", *TINY],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out.stderr
    assert "finished but is not stored" in out.stderr and "Traceback" not in out.stderr
    (run,) = [RunDir(p) for p in (tmp_path / "runs").iterdir()]
    assert run.status()["status"] == "finished" and run.evaluation("test")
