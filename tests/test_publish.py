"""Results others can read: the storage format, busy-database handling, exports, tables with spread."""
import os
import subprocess
import sys

import duckdb
import pytest

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
    from lvmbench.runner import ingest_quietly

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
