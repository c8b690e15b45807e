"""The SQL screen's editor, read from the editor's text, the results table, the history file and the
clipboard: multi-line queries with SQL highlighting run with ctrl+r, past queries come back with Up/Down
(also after a restart), Tab completes table and column names, results export and copy."""
from __future__ import annotations

import json
from pathlib import Path

from textual.widgets import DataTable

from lvmbench.tui.history import HISTORY_FILE, QueryHistory
from lvmbench.tui.screens.sql import SqlEditor, complete

from .conftest import settle
from .test_values import on_screen, shown

FIRST = "SELECT method, round(overall, 1) AS overall\nFROM runs JOIN evals USING (run_id)\nWHERE split = 'test'"
SECOND = "SELECT count(*) AS n\nFROM runs"


async def run(pilot, editor: SqlEditor, sql: str) -> None:
    editor.text = sql
    await pilot.press("ctrl+r")
    await settle(pilot)


async def test_a_multi_line_query_runs_with_ctrl_r_and_is_kept_next_to_the_database(fixture_store):
    results, _ = fixture_store
    async with on_screen(fixture_store, "f5", size=(80, 24)) as (app, pilot):
        editor = app.screen.query_one(SqlEditor)
        assert editor.has_focus and editor.language == "sql" and editor.is_syntax_aware  # highlighted
        await run(pilot, editor, FIRST)
        assert [r["method"] for r in shown(app, "sql-result")][:2] == ["zeroshot", "ce"]
        assert str(app.screen.query_one("#sql-note").render()) == "4 row(s)"
        await run(pilot, editor, SECOND)
        assert shown(app, "sql-result") == [{"n": "5"}]
    saved = Path(results).parent / HISTORY_FILE
    assert [json.loads(line) for line in saved.read_text().splitlines()] == [FIRST, SECOND]


async def test_up_and_down_step_through_past_queries_across_sessions(fixture_store):
    results, _ = fixture_store
    history = QueryHistory(Path(results).parent / HISTORY_FILE)
    history.add(FIRST)
    history.add(SECOND)
    async with on_screen(fixture_store, "f5", size=(80, 24)) as (app, pilot):
        editor = app.screen.query_one(SqlEditor)
        editor.insert("SELECT 42")  # a draft: given back after the newest query
        texts = []
        for key in ("up", "up", "up", "down", "down", "down", "ctrl+up", "ctrl+down"):
            if key in ("up", "down"):  # Up recalls on the first line, Down on the last (elsewhere they move)
                editor.move_cursor((0, 0) if key == "up" else editor.document.end)
            await pilot.press(key)
            texts.append(editor.text)
        assert texts == [SECOND, FIRST, FIRST, SECOND, "SELECT 42", "SELECT 42", SECOND, "SELECT 42"]
        editor.text = "SELECT 1\nFROM runs"
        editor.move_cursor((1, 0))
        await pilot.press("up")  # not on the first line: the cursor moves, the text stays
        assert editor.text == "SELECT 1\nFROM runs" and editor.cursor_location[0] == 0


async def test_tab_completes_table_and_column_names(fixture_store):
    async with on_screen(fixture_store, "f5", size=(80, 24)) as (app, pilot):
        editor = app.screen.query_one(SqlEditor)
        editor.insert("SELECT overa")
        await pilot.press("tab")
        assert editor.text == "SELECT overall" and editor.has_focus
        editor.insert(" FROM per_")
        await pilot.press("tab")
        assert editor.text == "SELECT overall FROM per_class"
        editor.insert(" JOIN ru")
        await pilot.press("tab")  # run_id, runs: as far as they agree, and the candidates named
        assert editor.text == "SELECT overall FROM per_class JOIN run"
        note = str(app.screen.query_one("#sql-note").render())
        assert "run_id" in note and "runs" in note


def test_completion_adds_what_the_matches_share():
    names = ["runs", "run_id", "recipe", "Overall"]
    assert complete("ove", names) == ("rall", ["Overall"])
    assert complete("ru", names) == ("n", ["run_id", "runs"])
    assert complete("runs", names) == ("", [])  # complete already
    assert complete("zz", names) == ("", [])


async def test_results_export_as_csv_and_the_highlighted_row_copies(fixture_store):
    results, _ = fixture_store
    async with on_screen(fixture_store, "f5", size=(80, 24)) as (app, pilot):
        editor = app.screen.query_one(SqlEditor)
        await run(pilot, editor, "SELECT method, seed FROM runs WHERE method IN ('ce', 'lade') ORDER BY method")
        await pilot.press("ctrl+s")
        await settle(pilot)
        await pilot.press("escape")  # out of the editor, to the results
        table = app.screen.query_one("#sql-result", DataTable)
        assert table.has_focus
        await pilot.press("down", "ctrl+o")
        assert app.clipboard == "lade\t0"
        await pilot.press("e")
        assert editor.has_focus
    assert (Path(results).parent / "query.csv").read_text().splitlines() == ["method,seed", "ce,0", "lade,0"]
