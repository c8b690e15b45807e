"""Reading never writes: ingest and every UI screen leave the run directories byte-identical, even a
run left ``running`` whose process vanished (recording it ``killed`` is ``runs.scheduler.recover``'s)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lvmbench.runs import process, scheduler
from lvmbench.runs.rundir import RunDir
from lvmbench.store import open_writer
from lvmbench.store.ingest import ingest_dir
from lvmbench.tui.app import LvmbenchApp

from .conftest import T0, make_run, settle


def vanished_run(runs_dir: Path) -> RunDir:
    """A run whose status says running, with the pid of a process that has ended and no owner."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return make_run(runs_dir, "mnist-lt-lade-s3-vanished", "lade", seed=3, when=T0 + 2000, status="running",
                    started_at=T0 + 2001, pid=int(gone.stdout), host=None)


def contents(runs_dir: Path) -> dict[str, bytes]:
    return {p.relative_to(runs_dir).as_posix(): p.read_bytes() for p in sorted(runs_dir.rglob("*")) if p.is_file()}


async def test_ingest_and_every_screen_leave_run_directories_byte_identical(fixture_store, tmp_path):
    results, runs_dir = fixture_store
    vanished = vanished_run(runs_dir)
    assert process.view(vanished)["status"] == "killed"  # what readers show
    before = contents(runs_dir)
    with open_writer(tmp_path / "fresh.duckdb") as con:
        ingest_dir(con, runs_dir)
    assert contents(runs_dir) == before
    app = LvmbenchApp(results=results, runs_dir=runs_dir, poll_s=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        for key in ("f2", "n", "n", "f3", "down", "down", "enter", "escape", "f4", "f5", "question_mark",
                    "escape", "f1"):
            await pilot.press(key)
            await settle(pilot)
    assert contents(runs_dir) == before
    assert scheduler.recover(vanished)["status"] == "killed"  # the one explicit step writes it
    assert contents(runs_dir) != before
