"""The UI's SQL screen: the console's read-only rules, and names and values shown as they are."""
from __future__ import annotations

from lvmbench.tui.app import LvmbenchApp

from .test_snapshots import settle


async def test_sql_screen_refuses_writes_and_shows_markup_literally(fixture_store, tmp_path):
    results, runs_dir = fixture_store
    before = results.read_bytes()
    app = LvmbenchApp(results=results, runs_dir=runs_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f5")
        box = app.screen.query_one("#sql-input")
        for sql, expected in [(f"COPY runs TO '{tmp_path}/leak.csv'", "refused COPY"),
                              (f"ATTACH '{tmp_path}/new.duckdb' AS n", "refused ATTACH"),
                              ("SET enable_external_access = true", "refused SET"),
                              ("SELECT '[/]' AS \"[red]x[/red]\"", "1 row(s)")]:
            box.value = sql
            await pilot.press("enter")
            await settle(pilot)
            note = str(app.screen.query_one("#sql-note").render())
            assert expected in note, (sql, note)
        table = app.screen.query_one("#sql-result")
        assert [str(c.label) for c in table.columns.values()] == ["[red]x[/red]"]
        assert str(table.get_row_at(0)[0]) == "[/]"
    assert not (tmp_path / "leak.csv").exists() and not (tmp_path / "new.duckdb").exists()
    assert results.read_bytes() == before
