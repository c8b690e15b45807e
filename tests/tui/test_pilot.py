"""The whole loop through the UI on CPU: launch tiny runs on the embedded default from the Launch
screen, watch metrics arrive, see them stored in Runs and Compare, cancel one, and survive a child
that fails on a bad path."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import Input, Select

import lvmbench
from lvmbench.tui.app import LvmbenchApp

pytestmark = pytest.mark.slow

EMBEDDED = Path(lvmbench.__file__).parent / "models" / "assets" / "tiny-clip.pt"
TINY = "train.iters=40 train.batch_size=16 train.eval_every=20 train.warmup_iters=2 train.log_every=2 train.threads=1"
LONG = "train.iters=100000 train.batch_size=16 train.eval_every=100000 train.log_every=2 train.threads=1"
RANDOM_WEIGHTS = """
import sys, open_clip, torch
from lvmbench.models import tiny_clip
tiny_clip.register()
torch.save(open_clip.create_model("tiny-clip").state_dict(), sys.argv[1])
"""


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> str:
    """The embedded checkpoint (empty field) or, while it is not built yet, random tiny-clip weights."""
    if EMBEDDED.exists():
        return ""
    path = tmp_path_factory.mktemp("weights") / "tiny-clip-random.pt"
    subprocess.run([sys.executable, "-c", RANDOM_WEIGHTS, str(path)], check=True, capture_output=True, timeout=300)
    return str(path)


async def wait_for(pilot, condition, what: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.2)


async def launch(pilot, **fields) -> str:
    """Fill the Launch form (other fields back to their defaults) and press ctrl+l; return the new run id."""
    app = pilot.app
    await pilot.press("f1")
    await pilot.pause()
    screen = app.screen
    form = {"dataset": "mnist-lt", "method": "ce", "backbone": "tiny-clip", "pretrained": "", "data_root": "",
            "seed": "", "sets": ""}
    for name, value in {**form, **fields}.items():
        widget = screen.query_one(f"#{name.replace('.', '-')}")
        if isinstance(widget, Select):
            widget.value = value
        else:
            assert isinstance(widget, Input)
            widget.value = value
    await pilot.pause()
    before = set(app.jobs)
    await pilot.press("ctrl+l")
    await wait_for(pilot, lambda: set(app.jobs) - before and app.screen.__class__.__name__ == "LiveScreen",
                   "the Live screen after launching", timeout=10)
    return (set(app.jobs) - before).pop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


async def test_launch_watch_finish_fail_cancel(tmp_path, monkeypatch, pretrained):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    empty = tmp_path / "empty-dataset"
    empty.mkdir()
    app = LvmbenchApp(results=tmp_path / "results" / "results.duckdb", runs_dir=tmp_path / "runs", poll_s=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        # A child that fails on a bad path, and a tiny run on the embedded default, side by side.
        failing = await launch(pilot, dataset="folder", data_root=str(empty), pretrained=pretrained, sets=TINY)
        good = await launch(pilot, pretrained=pretrained, sets=TINY)
        live = app.screen
        assert live.current == good

        await wait_for(pilot, lambda: live.data and live.data.run_id == good and live.data.loss.x, "live metrics")
        assert app.jobs[good].proc.poll() is None, "metrics should arrive while the run trains"
        await wait_for(pilot, lambda: app.jobs[good].ended and app.jobs[failing].ended, "both children to end")
        await wait_for(pilot, lambda: live.state[0] == "finished", "the Live screen to show the run finished")
        assert live.data.step == 40 and live.data.val_overall.x == [20, 40]
        assert "loader wait" in str(live.query_one("#progress-text").render())  # the run logs its loader wait
        assert any("test: overall" in line for line in live.data.log)

        live.select(failing)
        await wait_for(pilot, lambda: live.state[0] == "failed", "the failed child's state")
        shown = str(live.query_one("#run-error").render())
        assert "train folder not found" in shown, shown

        # Cancel a long run: the whole tree stops and the run is recorded as cancelled.
        long = await launch(pilot, pretrained=pretrained, sets=LONG)
        run = app.jobs[long].run
        await wait_for(pilot, lambda: live.data.run_id == long and live.data.loss.x, "the long run to train")
        child_pid = run.status()["pid"]
        await pilot.press("c", "y")  # cancel, once confirmed
        await wait_for(pilot, lambda: app.jobs[long].ended, "the cancelled child to exit", timeout=60)
        assert run.status()["status"] == "cancelled"
        assert not _alive(child_pid), "the training process outlived the cancel"
        await wait_for(pilot, lambda: live.state[0] == "cancelled", "the Live screen to show the cancel")

        # Both stored runs appear in Runs (the failed launch never created a run) and in Compare.
        await pilot.press("f3")
        runs = app.screen
        await wait_for(pilot, lambda: runs.result and len(runs.result.rows) == 2, "two stored runs")
        by_id = {row[-1]: row for row in runs.result.rows}
        assert by_id[good][0] == "finished" and by_id[long][0] == "cancelled"
        await pilot.press("f4")
        compare = app.screen
        await wait_for(pilot, lambda: compare.table and compare.table.rows, "the main table")
        assert [row[0] for row in compare.table.rows] == ["ce"]
