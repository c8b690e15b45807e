"""Snapshots of every screen at 80x24 and 160x45, from fixed run directories and a fixed database of a
dozen runs (``busy_store``); the pilot tests read the values, these show the layout."""
from __future__ import annotations

import pytest

from lvmbench.tui.app import LvmbenchApp

from .conftest import settle

SIZES = [(80, 24), (160, 45)]


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
    pilot.app.screen.query_one("#sql-editor").text = (
        "SELECT method, round(overall, 1) AS overall, round(few, 1) AS few\nFROM runs JOIN evals USING (run_id)\n"
        "WHERE split = 'test' ORDER BY overall DESC")
    await pilot.press("ctrl+r")
    await settle(pilot)


async def sql_results(pilot) -> None:
    """Out of the editor (Esc): the results take the keys, the footer shows ? and q."""
    await sql_query(pilot)
    await pilot.press("escape")
    await settle(pilot)


SCREENS = {"launch": keys(), "live": keys("f2"), "live-next-plot": keys("f2", "v"), "runs": keys("f3"),
           "runs-sort-by": keys("f3", "o"), "runs-cancel": keys("f3", "c"), "detail": keys("f3", "down", "down", "down", "enter"),
           "compare": keys("f4"), "compare-plot": keys("f4", "p"), "sql": sql_query, "sql-results": sql_results,
           "help": keys("f3", "question_mark")}


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen(snap_compare, busy_store, screen, size):
    results, runs_dir = busy_store
    app = LvmbenchApp(results=results, runs_dir=runs_dir)
    assert snap_compare(app, terminal_size=size, run_before=SCREENS[screen])


def test_empty_store(snap_compare, tmp_path, monkeypatch):
    """No database yet: Runs says how to start."""
    monkeypatch.chdir(tmp_path)
    app = LvmbenchApp(results="results/results.duckdb", runs_dir="runs")
    assert snap_compare(app, terminal_size=(80, 24), run_before=keys("f3"))
