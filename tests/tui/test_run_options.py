"""``lvmbench run --run-id`` and ``--no-ingest``, which let the UI name runs and own the database."""
from __future__ import annotations

import pytest

from lvmbench.cli import main
from lvmbench.errors import UserError
from lvmbench.runs.rundir import RunDir, check_run_id, new_run_id


def test_new_run_ids_are_readable_and_unique():
    a, b = new_run_id("mnist-lt", "ce", 3), new_run_id("mnist-lt", "ce", 3)
    assert a.startswith("mnist-lt-ce-s3-") and a != b
    check_run_id("runs", a)


@pytest.mark.parametrize("bad", ["a/b", "../x", ".hidden", "a b", "x" * 129])
def test_run_id_must_be_a_plain_folder_name(bad, tmp_path):
    with pytest.raises(UserError, match="use letters, digits"):
        check_run_id(tmp_path, bad)


def test_an_empty_run_id_is_refused_as_empty(tmp_path):
    with pytest.raises(UserError, match="--run-id is empty: give a run id"):
        check_run_id(tmp_path, "")


def test_run_id_of_an_existing_run_is_refused(tmp_path):
    RunDir.create(tmp_path, {"dataset": "d", "method": "ce", "seed": 0}, run_id="taken")
    with pytest.raises(UserError, match="a run with this id already exists"):
        check_run_id(tmp_path, "taken")


def test_a_run_can_be_created_in_a_folder_that_holds_only_its_log(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "stdout.log").write_text("starting\n")
    run = RunDir.create(tmp_path, {"dataset": "d", "method": "ce", "seed": 0}, run_id="mine")
    assert run.run_id == "mine" and run.status()["status"] == "queued"
    assert run.log_file.read_text() == "starting\n"


def test_cli_refuses_a_bad_run_id_in_one_line(store, capsys):
    assert main(["run", "--headless", "--run-id", "a/b"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: --run-id 'a/b': use letters, digits, '.', '_' and '-' (at most 128)"
    results, runs = store
    assert not results.exists() and not runs.exists()
