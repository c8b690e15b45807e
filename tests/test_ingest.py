"""Ingest: the store holds exactly what the run directories hold, however they are ingested.

``reference_ingest`` restates, row by row in plain Python, what ingest stored before it became
columnar and incremental (one record per complete JSON line, the latest record per (step, key),
timestamps as naive UTC): every faster path must store the same rows.
"""
import json
import math
import os
from contextlib import contextmanager
from datetime import datetime, timezone

import duckdb
import pytest

from lvmbench import cli
from lvmbench.runs.rundir import RunDir, list_runs
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
    runs = list_runs(runs_dir)  # run folders only (a sweep claim folder may sit beside them)
    assert len(runs) == 2
    assert cli.main(["ingest"]) == 0
    got, want = contents(results), reference_contents(tmp_path, runs)
    assert len(want["metrics"]) > 10 and want["per_class"] and want["evals"]
    for table in RESULT_TABLES:
        assert got[table] == want[table], table


# -- incremental: unchanged runs are not read again, changed ones are brought up to date -------------

def test_reingest_updates_exactly_the_run_whose_file_changed(tmp_path):
    runs_dir, db = tmp_path / "runs", tmp_path / "r.duckdb"
    runs = awkward_runs(runs_dir)
    first = ingest_all(db, runs_dir)
    assert sorted(first.stored) == sorted(r.run_id for r in runs) and not first.unchanged
    again = ingest_all(db, runs_dir)
    assert again.stored == [] and sorted(again.unchanged) == sorted(r.run_id for r in runs)
    changed = runs[2]
    ev = json.loads((changed.eval_dir / "test.json").read_text())
    (changed.eval_dir / "test.json").write_text(json.dumps({**ev, "overall": 77.25}))
    third = ingest_all(db, runs_dir)
    assert third.stored == [changed.run_id] and len(third.unchanged) == len(runs) - 1
    assert contents(db) == reference_contents(tmp_path, runs)
    with open_readonly(db) as con:
        assert con.execute("SELECT overall FROM evals WHERE run_id = ? AND split = 'test'",
                           [changed.run_id]).fetchone() == (77.25,)


def test_an_edited_log_of_a_finished_run_is_read_again(tmp_path):
    runs_dir, db = tmp_path / "runs", tmp_path / "r.duckdb"
    run = fake_run(runs_dir, "ce")
    ingest_all(db, runs_dir)
    text = run.metrics_file.read_text()
    run.metrics_file.write_text(text.replace('"loss": 1.5', '"loss": 2.5'))  # same size, same file
    assert ingest_all(db, runs_dir).stored == [run.run_id]
    with open_readonly(db) as con:
        assert con.execute("SELECT value FROM metrics WHERE key = 'loss'").fetchall() == [(2.5,)]
    assert contents(db) == reference_contents(tmp_path, [run])


@contextmanager
def training(run: RunDir, monkeypatch):
    """``run`` is live while inside: its owner lock is held (as by its training child), so ingest reads
    its logs on from where it stopped instead of recording it killed; yields the ``replace`` flag of
    every metrics chunk ingest read, to show which path it took."""
    from lvmbench.store import sources

    chunks = []
    original = sources.read_log

    def spy(path, *args):
        chunk = original(path, *args)
        if path.name == "metrics.jsonl":
            chunks.append(chunk.replace)
        return chunk

    monkeypatch.setattr(sources, "read_log", spy)
    lock = run.lock()
    assert lock.acquire()
    try:
        yield chunks
    finally:
        lock.release()


def test_a_running_run_gains_its_new_lines_and_a_resume_keeps_the_latest_records(tmp_path, monkeypatch):
    runs_dir, db = tmp_path / "runs", tmp_path / "r.duckdb"
    run = fake_run(runs_dir, "ce", status="running")
    for step in range(30, 60, 10):
        run.append(run.metrics_file, {"step": step, "loss": 1.0 / step, "ts": 1_700_000_000 + step})
    with open(run.metrics_file, "a") as f:
        f.write('{"step": 60, "loss":')  # being written
    with training(run, monkeypatch) as chunks:
        ingest_all(db, runs_dir)
        with open(run.metrics_file, "a") as f:  # the line completes; the run is resumed from 40
            f.write(' 0.5, "ts": 1700000060}\n')
        for step, loss in [(50, 0.25), (60, 0.125), (70, 0.0625)]:
            run.append(run.metrics_file, {"step": step, "loss": loss, "ts": 1_700_001_000 + step})
        run.append(run.system_file, {"ts": 1_700_001_070, "gpu_index": None, "mem_mib": 900.0})
        before = run.metrics_file.stat().st_size
        assert ingest_all(db, runs_dir).stored == [run.run_id]
    assert chunks == [True, False]  # read whole, then only its new lines
    assert run.status()["status"] == "running"
    with open_readonly(db) as con:
        assert con.execute("SELECT status FROM runs").fetchone() == ("running",)
        stored = json.loads(con.execute("SELECT files FROM run_sources").fetchone()[0])
        losses = dict(con.execute("SELECT step, value FROM metrics WHERE key = 'loss' AND step >= 50").fetchall())
    assert stored["files"]["metrics.jsonl"]["read_to"] == before  # read on from where it stopped
    assert losses == {50: 0.25, 60: 0.125, 70: 0.0625}
    assert contents(db) == reference_contents(tmp_path, [run])
    run.write_status(status="finished")
    assert ingest_all(db, runs_dir).stored == [run.run_id]
    assert contents(db) == reference_contents(tmp_path, [run])


def test_a_replaced_log_is_read_from_its_start(tmp_path):
    runs_dir, db = tmp_path / "runs", tmp_path / "r.duckdb"
    run = fake_run(runs_dir, "ce", status="running")
    ingest_all(db, runs_dir)
    run.metrics_file.unlink()
    run.append(run.metrics_file, {"step": 5, "loss": 3.0, "ts": 1_700_000_005})
    run.append(run.metrics_file, {"step": 6, "loss": 2.0, "lr": 0.1, "ts": 1_700_000_006})
    ingest_all(db, runs_dir)
    assert contents(db) == reference_contents(tmp_path, [run])


# -- one bad folder never stops ingest ---------------------------------------------------------------

def test_bad_folders_are_named_and_skipped_and_the_good_runs_stored(store, capsys):
    results, runs_dir = store
    good, big_seed = fake_run(runs_dir, "ce"), fake_run(runs_dir, "focal")
    spec = json.loads(big_seed.spec_file.read_text())
    big_seed.spec_file.write_text(json.dumps({**spec, "seed": 3_000_000_000}))  # fits a BIGINT
    broken = fake_run(runs_dir, "ldam")
    broken.spec_file.write_text('{"dataset": "mnist-lt", ')
    too_big = fake_run(runs_dir, "lade")
    too_big.spec_file.write_text(json.dumps({**spec, "seed": 2 ** 64}))
    bad_eval = fake_run(runs_dir, "grw")
    (bad_eval.eval_dir / "test.json").write_text("{not json")
    assert cli.main(["ingest"]) == 1
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert sorted(lines) == sorted([
        f"skipped {broken.path}: spec.json is not valid JSON (Expecting property name enclosed in double quotes: "
        "line 1 column 25 (char 24))",
        f"skipped {too_big.path}: spec.json: seed={2 ** 64}: must be between 0 and {2 ** 32 - 1}",
        f"skipped {bad_eval.path}: eval/test.json is not valid JSON (Expecting property name enclosed in double "
        "quotes: line 1 column 2 (char 1))"])
    assert out.startswith("stored 2 run(s), 0 unchanged, 3 skipped in ")
    with open_readonly(results) as con:
        assert dict(con.execute("SELECT run_id, seed FROM runs").fetchall()) == {good.run_id: 0,
                                                                                 big_seed.run_id: 3_000_000_000}
        assert con.execute("SELECT count(*) FROM metrics WHERE run_id NOT IN (?, ?)",
                           [good.run_id, big_seed.run_id]).fetchone() == (0,)
    (bad_eval.eval_dir / "test.json").write_text("[]")  # valid JSON, wrong shape
    assert cli.main(["ingest"]) == 1
    assert f"skipped {bad_eval.path}: eval/test.json is not a JSON object" in capsys.readouterr().err


def test_a_broken_spec_does_not_stop_a_scan_for_finished_runs(store, capsys):
    from lvmbench.runs import plan

    results, runs_dir = store
    good = fake_run(runs_dir, "ce")
    broken = fake_run(runs_dir, "focal")
    broken.spec_file.write_text("{")
    assert [r.run_id for r in plan.finished_runs(runs_dir).values()] == [good.run_id]
    assert cli.main(["sweep", "--method", "ce,crt", "--dry-run"]) == 0


def test_ingest_warns_about_files_that_look_cut(store, capsys):
    results, runs_dir = store
    cut = fake_run(runs_dir, "ce")
    with open(cut.metrics_file, "a") as f:
        f.write('{"step": 30, "lo')
    empty = fake_run(runs_dir, "focal")
    empty.status_file.write_text("")
    no_eval = fake_run(runs_dir, "ldam")
    for name in os.listdir(no_eval.eval_dir):
        (no_eval.eval_dir / name).unlink()
    junk = fake_run(runs_dir, "lade")
    with open(junk.system_file, "a") as f:
        f.write("[1, 2]\ngarbage\n")
    assert cli.main(["ingest"]) == 0
    out, err = capsys.readouterr()
    assert sorted(err.strip().splitlines()) == sorted([
        f"warning: {cut.run_id}: metrics.jsonl ends in an incomplete line (16 bytes not stored)",
        f"warning: {empty.run_id}: status.json is empty: stored as queued",
        f"warning: {no_eval.run_id}: finished but has no eval/test.json: stored without test results",
        f"warning: {junk.run_id}: system.jsonl: 2 line(s) that are not JSON objects, not stored"])
    assert out.startswith("stored 4 run(s), 0 unchanged in ")
    assert cli.main(["ingest"]) == 0
    assert capsys.readouterr().out.startswith("stored 0 run(s), 4 unchanged in ")


# -- types: the store holds what the CLI accepts --------------------------------------------------------

def test_every_integer_column_is_64_bit_and_an_older_database_is_widened(tmp_path):
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, seed INTEGER, iters INTEGER)")
    con.execute("INSERT INTO runs VALUES ('old', 1, 2)")
    con.close()
    with open_writer(db) as con:
        types = {(t, c): ty for t in COLUMNS for c, ty, *_ in con.execute(f"DESCRIBE {t}").fetchall()}
        con.execute("UPDATE runs SET seed = 3000000000 WHERE run_id = 'old'")
        assert con.execute("SELECT seed, iters FROM runs").fetchall() == [(3_000_000_000, 2)]
    assert "INTEGER" not in types.values()
    assert types[("runs", "seed")] == types[("metrics", "step")] == types[("per_class", "class_id")] == "BIGINT"


def test_a_seed_beyond_what_training_can_use_is_refused_up_front(store, capsys):
    results, runs_dir = store
    assert cli.main(["run", "--headless", "--seed", "4294967296"]) == 2
    assert capsys.readouterr().err == "error: --seed 4294967296: must be between 0 and 4294967295\n"
    assert not results.exists() and not runs_dir.exists()


def test_bench_ingest_reports_what_it_stored(capsys):
    assert cli.main(["bench", "--ingest", "3", "--ingest-rows", "40", "--ingest-classes", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == {"metrics": 120, "system": 3 * 256, "per_class": 18, "evals": 6, "runs": 3}
    assert set(report["cpu_s"]) == {"first_ingest", "reingest_unchanged", "one_new_run", "table_main", "table_main_ci"}
    assert cli.main(["bench", "--ingest", "0"]) == 2


def test_a_sweep_stores_the_good_runs_it_ingests_together_and_names_the_bad(store, capsys):
    from lvmbench.runs.scheduler import ingest_quietly

    results, runs_dir = store
    bad, good = fake_run(runs_dir, "ce"), fake_run(runs_dir, "focal")
    (bad.eval_dir / "per_class_test.json").write_text("{}")
    ingest_quietly(results, bad, good)
    assert capsys.readouterr().err == (f"warning: kept in {bad.path} but not stored: eval/per_class_test.json is "
                                       f"not a JSON array (later: lvmbench ingest {bad.path} --results {results})\n")
    with open_readonly(results) as con:
        assert con.execute("SELECT run_id FROM runs").fetchall() == [(good.run_id,)]


def test_an_unreadable_run_folder_is_named_and_the_others_stored(tmp_path, monkeypatch):
    from pathlib import Path

    runs_dir = tmp_path / "runs"
    locked, good = fake_run(runs_dir, "ce"), fake_run(runs_dir, "focal")
    from lvmbench.runs import rundir

    open_file = rundir.open_file

    def denied(path):  # as a file without read permission (tests may run as root)
        if Path(path) == locked.status_file:
            raise PermissionError(13, "Permission denied", str(path))
        return open_file(path)

    monkeypatch.setattr(rundir, "open_file", denied)
    report = ingest_all(tmp_path / "r.duckdb", runs_dir)
    assert report.stored == [good.run_id]
    assert report.skipped == [(locked.path, f"cannot read {locked.status_file}: Permission denied")]


def test_each_unreadable_spec_or_status_is_named_and_a_failed_input_left_out(tmp_path):
    """Every reason a folder is skipped or a run stored with a warning, word for word, through the
    library call a sweep and the UI use; ``ingest_run`` raises the one reason as a user error."""
    from lvmbench.errors import UserError
    from lvmbench.store.ingest import ingest_run, ingest_runs

    runs_dir = tmp_path / "runs"
    latin1, a_list = fake_run(runs_dir, "ce"), fake_run(runs_dir, "focal")
    latin1.spec_file.write_bytes("{\"dataset\": \"caf\xe9\"}".encode("latin-1"))
    a_list.spec_file.write_text("[1, 2]")
    no_status, list_status = fake_run(runs_dir, "lade"), fake_run(runs_dir, "grw")
    no_status.status_file.unlink()
    list_status.status_file.write_text("[]")
    refused = fake_run(runs_dir, "ldam")
    refused.write_status(status="failed", user_error=True)
    no_dataset, wrong_kind = fake_run(runs_dir, "logit_adjust"), fake_run(runs_dir, "balanced_softmax")
    no_dataset.spec_file.write_text(json.dumps({k: v for k, v in no_dataset.spec().items() if k != "dataset"}))
    wrong_kind.write_status(energy_kwh="lots")
    big = fake_run(runs_dir, "cbw")
    big.write_status(trainable_params=2 ** 63 - 1, total_params=-2 ** 63)  # the edges of a BIGINT fit
    with open_writer(tmp_path / "results.duckdb") as con:
        report = ingest_runs(con, [latin1, a_list, no_dataset, wrong_kind, no_status, list_status, refused, big])
        with pytest.raises(UserError) as err:
            ingest_run(con, a_list)
        assert str(err.value) == "spec.json is not a JSON object"
        stored = dict(con.execute("SELECT run_id, status FROM runs").fetchall())
        assert con.execute("SELECT trainable_params, total_params FROM runs WHERE run_id = ?",
                           [big.run_id]).fetchone() == (2 ** 63 - 1, -2 ** 63)
    assert report.skipped == [
        (latin1.path, "spec.json is not UTF-8 text"), (a_list.path, "spec.json is not a JSON object"),
        (no_dataset.path, "spec.json has no 'dataset'"),
        (wrong_kind.path, "spec.json or status.json holds a value of the wrong kind (can't multiply sequence by "
                          "non-int of type 'float')")]
    assert report.warnings == [(no_status.run_id, "no status.json: stored as queued"),
                               (list_status.run_id, "status.json is not a JSON object: stored as queued")]
    assert report.left_out == [refused.run_id]
    assert report.summary() == "stored 3 run(s), 0 unchanged, 1 left out (failed on bad input), 4 skipped"
    assert stored == {no_status.run_id: "queued", list_status.run_id: "queued", big.run_id: "finished"}


def test_a_stored_run_without_its_sources_record_is_replaced_not_duplicated(tmp_path):
    """A database written before ``run_sources`` existed (or with it emptied) holds runs ingest does not
    know it stored: storing them again replaces their rows."""
    from lvmbench.store.ingest import ingest_runs

    run = fake_run(tmp_path / "runs", "ce")
    with open_writer(tmp_path / "results.duckdb") as con:
        ingest_runs(con, [run])
        before = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in RESULT_TABLES}
        con.execute("DELETE FROM run_sources")
        report = ingest_runs(con, [run])
        after = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in RESULT_TABLES}
    assert report.stored == [run.run_id] and not report.skipped
    assert after == before and before["runs"] == 1 and before["evals"] == 1


def test_each_ingest_of_a_running_run_keeps_every_line_it_stored_before(tmp_path, monkeypatch):
    """A run is ingested while it trains (the UI does so on every refresh): after each ingest the store
    holds every complete line written so far, once, as an ingest of the finished run would."""
    runs_dir, db = tmp_path / "runs", tmp_path / "r.duckdb"
    run = fake_run(runs_dir, "focal", status="running")
    with training(run, monkeypatch) as chunks:
        for step in range(100, 160, 10):
            run.append(run.metrics_file, {"step": step, "loss": 1000.0 / step, "lr": step / 1e4,
                                          "ts": 1_700_000_000 + step})
            run.append(run.system_file, {"ts": 1_700_000_000 + step, "gpu_index": None, "mem_mib": float(step)})
            assert ingest_all(db, runs_dir).stored == [run.run_id]
            assert contents(db) == reference_contents(tmp_path, [run])
            with open_readonly(db) as con:
                assert con.execute("SELECT count(*) FROM metrics WHERE key = 'lr' AND step >= 100").fetchone() == ((step - 90) // 10,)
    assert chunks == [True] + [False] * 5


def test_a_running_runs_log_rewritten_before_where_ingest_stopped_is_read_again_whole(tmp_path, monkeypatch):
    """Appending needs the bytes before the last read position unchanged: a log rewritten in place (same
    inode, one earlier value changed, then grown) is read again from its start, and the store holds what it says."""
    runs_dir, db = tmp_path / "runs", tmp_path / "r.duckdb"
    run = fake_run(runs_dir, "ce", status="running")
    run.append(run.metrics_file, {"step": 30, "loss": 0.25, "ts": 1_700_000_030})
    with training(run, monkeypatch) as chunks:
        ingest_all(db, runs_dir)
        with open(run.metrics_file, "r+b") as f:  # in place: the inode stays
            text = f.read()
            f.seek(0)
            f.write(text.replace(b'"loss": 0.25', b'"loss": 0.75'))
        run.append(run.metrics_file, {"step": 40, "loss": 0.5, "ts": 1_700_000_040})
        ingest_all(db, runs_dir)
    assert chunks == [True, True]
    with open_readonly(db) as con:
        assert dict(con.execute("SELECT step, value FROM metrics WHERE key = 'loss' AND step >= 30").fetchall()) == \
            {30: 0.75, 40: 0.5}
    assert contents(db) == reference_contents(tmp_path, [run])


def test_a_log_line_with_bytes_that_are_not_utf8_is_kept_and_a_dangling_log_named(tmp_path):
    """A line whose text holds a byte that is not UTF-8 is stored with its numbers (the byte replaced); a log
    that is a symlink to nothing skips its run, named."""
    import os

    runs_dir = tmp_path / "runs"
    latin1, dangling = fake_run(runs_dir, "ce"), fake_run(runs_dir, "focal")
    with open(latin1.metrics_file, "ab") as f:
        f.write(b'{"step": 99, "loss": 0.5, "note": "caf\xe9", "ts": 1700000099}\n')
    dangling.metrics_file.unlink()
    os.symlink(tmp_path / "nowhere", dangling.metrics_file)
    report = ingest_all(tmp_path / "r.duckdb", runs_dir)
    assert report.stored == [latin1.run_id]
    assert report.skipped == [(dangling.path, f"cannot read {dangling.metrics_file}: a dangling symlink")]
    with open_readonly(tmp_path / "r.duckdb") as con:
        assert con.execute("SELECT value FROM metrics WHERE step = 99 AND key = 'loss'").fetchall() == [(0.5,)]


def test_a_run_stored_before_its_logs_exist_gains_them_whole(tmp_path, monkeypatch):
    """A queued run has no logs yet: it is stored without metrics, and the lines its training writes later are
    read from the start."""
    runs_dir, db = tmp_path / "runs", tmp_path / "r.duckdb"
    run = fake_run(runs_dir, "ce", status="queued")
    run.metrics_file.unlink()
    run.system_file.unlink()
    with training(run, monkeypatch) as chunks:
        assert ingest_all(db, runs_dir).stored == [run.run_id]
        with open_readonly(db) as con:
            assert con.execute("SELECT count(*) FROM metrics").fetchone() == (0,)
        run.write_status(status="running")
        run.append(run.metrics_file, {"step": 10, "loss": 0.5, "ts": 1_700_000_010})
        assert ingest_all(db, runs_dir).stored == [run.run_id]
    assert chunks == [True, True]
    assert contents(db) == reference_contents(tmp_path, [run])
