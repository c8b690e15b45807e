"""Snapshots of every screen at 80x24 and 120x40, from fixed run directories and a fixed database."""
from __future__ import annotations

import pytest

from lvmbench.tui.app import LvmbenchApp

from .conftest import settle

SIZES = [(80, 24), (120, 40)]


def keys(*pressed):
    async def run_before(pilot) -> None:
        await settle(pilot)
        for key in pressed:
            await pilot.press(key)
            await settle(pilot)

    return run_before


async def sql_query(pilot) -> None:
    await pilot.press("f5")
    await settle(pilot)
    pilot.app.screen.query_one("#sql-input").value = (
        "SELECT method, round(overall, 1) AS overall, round(few, 1) AS few FROM runs JOIN evals USING (run_id) "
        "WHERE split = 'test' ORDER BY overall DESC")
    await pilot.press("enter")
    await settle(pilot)


SCREENS = {"launch": keys(), "live": keys("f2"), "runs": keys("f3"), "detail": keys("f3", "down", "down", "enter"),
           "compare": keys("f4"), "sql": sql_query}


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen(snap_compare, fixture_store, screen, size):
    results, runs_dir = fixture_store
    app = LvmbenchApp(results=results, runs_dir=runs_dir)
    assert snap_compare(app, terminal_size=size, run_before=SCREENS[screen])


def test_empty_store(snap_compare, tmp_path, monkeypatch):
    """No database yet: Runs says how to start."""
    monkeypatch.chdir(tmp_path)
    app = LvmbenchApp(results="results/results.duckdb", runs_dir="runs")
    assert snap_compare(app, terminal_size=(80, 24), run_before=keys("f3"))
