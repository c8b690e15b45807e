"""The run detail screen shows a run's classes: the count and many / medium / few, from its spec."""
from __future__ import annotations

from pathlib import Path

from lvmbench.runs.rundir import RunDir
from lvmbench.tui.app import LvmbenchApp
from lvmbench.tui.screens.detail import RunDetailScreen

from .conftest import T0, finished_run
from .test_snapshots import settle


async def test_detail_head_names_the_class_summary(tmp_path, monkeypatch):
    from lvmbench.store import open_writer
    from lvmbench.store.ingest import ingest_run

    monkeypatch.chdir(tmp_path)
    results, runs_dir = Path("results/results.duckdb"), Path("runs")
    run = finished_run(runs_dir, "mnist-lt-ce-s0-classes", "ce", T0)
    spec = run.spec()
    spec.update({"classes.total": 1000, "classes.with_train": 5, "classes.many": 0, "classes.medium": 1,
                 "classes.few": 999})
    (run.path / "spec.json").write_text(__import__("json").dumps(spec))
    with open_writer(results) as con:
        ingest_run(con, RunDir(run.path))
    app = LvmbenchApp(results=results, runs_dir=runs_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(RunDetailScreen("mnist-lt-ce-s0-classes"))
        await settle(pilot)
        head = str(app.screen.query_one("#detail-head").render())
    assert "1000 classes (5 with training images): many 0, medium 1, few 999" in head
