"""The app without training: keys, the Runs screen's ingest, the SQL screen's errors, a bad database."""
from __future__ import annotations

from lvmbench.tui.app import LvmbenchApp

from .conftest import settle


async def test_function_keys_switch_screens(fixture_store):
    results, runs_dir = fixture_store
    app = LvmbenchApp(results=results, runs_dir=runs_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        names = []
        for key in ("f2", "f3", "f4", "f5", "f1"):
            await pilot.press(key)
            names.append(type(app.screen).__name__)
        assert names == ["LiveScreen", "RunsScreen", "CompareScreen", "SqlScreen", "LaunchScreen"]


async def test_ingest_key_stores_run_directories_made_elsewhere(fixture_store):
    results, runs_dir = fixture_store
    app = LvmbenchApp(results=results, runs_dir=runs_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f3")
        await settle(pilot)
        screen = app.screen
        assert len(screen.result.rows) == 5
        await pilot.press("i")
        await settle(pilot)
        rows = {row[-1]: row for row in screen.result.rows}
        assert len(rows) == 6 and rows["mnist-lt-ce-s1-live"][0] == "running"


async def test_sql_errors_are_shown_inline_and_writes_are_refused(fixture_store, tmp_path):
    results, runs_dir = fixture_store
    before = results.read_bytes()
    app = LvmbenchApp(results=results, runs_dir=runs_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f5")
        box = app.screen.query_one("#sql-editor")
        for sql, expected in [("SELEC 1", "SQL error: Parser Error"), ("DELETE FROM runs", "read-only"),
                              (f"COPY runs TO '{tmp_path}/leak.csv'", "refused COPY"),
                              (f"ATTACH '{tmp_path}/new.duckdb' AS n", "refused ATTACH"),
                              ("SET enable_external_access = true", "refused SET"),
                              ("SELECT count(*) AS n FROM runs", "1 row(s)"),
                              ("SELECT '[/]' AS \"[red]x[/red]\"", "1 row(s)")]:
            box.text = sql
            await pilot.press("ctrl+r")
            await settle(pilot)
            note = str(app.screen.query_one("#sql-note").render())
            assert expected in note, (sql, note)
        table = app.screen.query_one("#sql-result")  # names and values as they are, never markup
        assert [str(c.label) for c in table.columns.values()] == ["[red]x[/red]"]
        assert str(table.get_row_at(0)[0]) == "[/]"
    assert not (tmp_path / "leak.csv").exists() and not (tmp_path / "new.duckdb").exists()
    assert results.read_bytes() == before


async def test_a_file_that_is_not_a_database_is_reported_not_fatal(tmp_path):
    bad = tmp_path / "results.duckdb"
    bad.write_text("not a database at all")
    app = LvmbenchApp(results=bad, runs_dir=tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f3")
        await settle(pilot)
        assert "is not a DuckDB database" in str(app.screen.query_one("#runs-note").render())
        await pilot.press("f4")
        await settle(pilot)
        assert "is not a DuckDB database" in str(app.screen.query_one("#compare-title").render())
    assert bad.read_text() == "not a database at all"


async def test_resume_key_relaunches_only_an_interrupted_run(fixture_store):
    from lvmbench.tui import jobs
    from lvmbench.tui.widgets.table import ResultTable

    results, runs_dir = fixture_store
    app = LvmbenchApp(results=results, runs_dir=runs_dir)
    launched = []
    app.launch = launched.append
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f3")
        await settle(pilot)
        table = app.screen.query_one(ResultTable)
        ids = [table.coordinate_to_cell_key((r, 0)).row_key.value for r in range(table.row_count)]
        table.move_cursor(row=ids.index("mnist-lt-ce-s0-fixture"))
        await pilot.press("R")  # finished: nothing to resume
        table.move_cursor(row=ids.index("mnist-lt-focal-s0-fixture"))
        await pilot.press("R")
        await settle(pilot)
        # no checkpoint: it starts over, and says so before anything starts
        assert "starts it over from step 0" in str(app.screen.query_one("#question").render())
        await pilot.press("n")
        assert launched == []
        await pilot.press("R", "y")
        await settle(pilot)
    assert launched == [jobs.LaunchRequest(resume="mnist-lt-focal-s0-fixture")]
    argv = launched[0].argv("ignored", runs_dir, results)
    assert argv[3:8] == ["run", "--headless", "--resume", "mnist-lt-focal-s0-fixture", "--no-ingest"]


async def test_result_table_measures_columns_at_once_and_keeps_the_cursor_on_an_unchanged_reload():
    """Columns are as wide as their widest cell the moment rows are shown (not cut to the width of their
    names until Textual is idle); showing the same rows again, as a periodic reload does, moves nothing."""
    from textual.app import App

    from lvmbench.tui.widgets.table import ResultTable

    class One(App):
        def compose(self):
            yield ResultTable()

    columns, rows = ["Method", "Few"], [["balanced_softmax", 87.6], ["ce", 76.25], ["lade", 84.9]]
    async with One().run_test(size=(80, 24)) as pilot:
        table = pilot.app.query_one(ResultTable)
        table.show(columns, rows)
        assert [c.get_render_width(table) - 2 * table.cell_padding for c in table.ordered_columns] == \
            [len("balanced_softmax"), len("76.25")]
        table.move_cursor(row=2)
        await pilot.pause()
        table.show(columns, [list(r) for r in rows])
        await pilot.pause()
        assert table.cursor_row == 2
        table.show(columns, rows[:2])
        await pilot.pause()
        assert table.row_count == 2
