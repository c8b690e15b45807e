"""Runs started from a shell show in an open UI's Runs screen while they train, and the UI cancels them."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from lvmbench.runs.rundir import list_runs
from lvmbench.tui.app import LvmbenchApp

from ..conftest import tiny
from .conftest import OWNERS

LONG = ["train.iters=100000", "train.batch_size=8", "train.threads=1", "train.eval_every=100000", "train.log_every=1"]


def shell_run(*sets: str) -> subprocess.Popen:
    """``lvmbench run --headless`` as typed in another terminal (its own results file)."""
    return subprocess.Popen([sys.executable, "-m", "lvmbench", "run", "--headless", "--runs-dir", "runs", "--results",
                             "shell.duckdb", "--set", *sets], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})


async def wait_until(pilot, predicate, timeout: float, what: str) -> float:
    """Seconds until ``predicate()`` holds, the app running meanwhile."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        await pilot.pause(0.05)
    return time.monotonic() - start


def shown(app) -> dict[str, str]:
    """Run id -> status cell of the Runs screen's rows."""
    screen = app.screen
    if not hasattr(screen, "rows"):
        return {}
    columns, rows = screen.rows()
    return {row[-1]: row[columns.index("status")] for row in rows}


def training(run_id_holder: list) -> bool:
    for run in list_runs("runs"):
        if run.state() == "running" and run.last_step() >= 1:
            run_id_holder[:] = [run.run_id]
            return True
    return False


@pytest.mark.slow
async def test_a_shell_run_shows_live_finishes_and_a_second_is_cancelled_from_the_ui(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = LvmbenchApp(results="results.duckdb", runs_dir="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f3")
        # long enough (a few seconds) that it still trains when the UI next refreshes, short enough to wait for
        quick = shell_run(*tiny("train.iters=200", "train.eval_every=100"))
        found: list = []
        await wait_until(pilot, lambda: training(found), 300, "the shell run to train")
        run_id = found[0]
        assert await wait_until(pilot, lambda: shown(app).get(run_id, "").startswith("running"), 2.0,
                                "the running run in Runs") <= 2.0
        await wait_until(pilot, lambda: quick.poll() is not None, 300, "the shell run to end")
        assert quick.returncode == 0
        await wait_until(pilot, lambda: shown(app).get(run_id) == "finished", 2.0, "the finished run in Runs")

        long = shell_run(*LONG)
        await wait_until(pilot, lambda: training(found) and found[0] != run_id, 300, "the second shell run")
        other = found[0]
        await wait_until(pilot, lambda: shown(app).get(other, "").startswith("running"), 2.0, "the second run")
        table = app.screen.query_one("#runs-table")
        table.focus()
        table.move_cursor(row=list(shown(app)).index(other))
        await pilot.press("c", "y")  # cancel, once confirmed
        await wait_until(pilot, lambda: long.poll() is not None, 60, "the cancelled shell run to end")
        assert long.returncode == 1
        (run,) = [r for r in list_runs("runs") if r.run_id == other]
        assert run.status()["status"] == "cancelled" and run.status()["error"] == "cancelled by the user"
        await wait_until(pilot, lambda: shown(app).get(other) == "cancelled", 2.0, "the cancelled run in Runs")


async def test_a_restarted_ui_stores_the_runs_an_earlier_one_launched(fixture_store):
    """Runs launched from the UI outlive it; the next UI finds them and stores each when it ends."""
    from lvmbench.runs.rundir import RunDir

    results, runs_dir = fixture_store
    run = RunDir(runs_dir / "mnist-lt-ce-s1-live")
    run.note(stored_by="caller")  # as `lvmbench run --no-ingest` (the UI's child) leaves it
    app = LvmbenchApp(results=results, runs_dir=runs_dir)
    app.adopt_s = 0.1
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: run.run_id in app.adopted, 5, "the UI to find the run")
        run.mark_finished(wall_s=1.0)
        OWNERS[run.run_id].release()
        stored = lambda: app.results.query("SELECT status FROM runs WHERE run_id = ?", [run.run_id]).rows  # noqa: E731
        await wait_until(pilot, lambda: stored() == [["finished"]], 5, "the run to be stored")
        assert run.run_id not in app.adopted
