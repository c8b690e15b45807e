"""Runs on a researcher's store at 80x24, read from the table and the focus: a short id tells alike
runs apart, status is coloured, Esc leaves the filter, a column is chosen to sort by and ``s`` reverses,
``c`` asks before it cancels, ``R`` resumes at once when a checkpoint exists."""
from __future__ import annotations

from textual.widgets import DataTable, Input

from lvmbench.tui.results import short_id
from lvmbench.tui.widgets.dialogs import Choose, Confirm

from .conftest import screen_text, settle
from .test_values import on_screen, shown


def styles_in_order(table: DataTable, column: str) -> list[str]:
    """The style of ``column``'s cell in each row, top to bottom."""
    j = [str(c.label) for c in table.columns.values()].index(column)
    return [str(table.get_row_at(i)[j].style) for i in range(table.row_count)]


def test_short_id_is_the_random_tail_of_a_made_id_else_the_id_less_its_prefix():
    assert short_id("mnist-lt-ce-s1-20231114-210000-c1e1", "mnist-lt", "ce", 1) == "c1e1"
    assert short_id("mnist-lt-ce-s0-fixture", "mnist-lt", "ce", 0) == "fixture"
    assert short_id("my-run", "mnist-lt", "ce", 0) == "my-run"


async def test_alike_runs_show_their_short_id_first_and_status_in_colour(busy_store):
    async with on_screen(busy_store, "f3", size=(80, 24)) as (app, pilot):
        table = app.screen.query_one("#runs-table", DataTable)
        lines = screen_text(app)
        statuses = [r["status"].split()[0] for r in shown(app, "runs-table")]
        colours = dict(zip(statuses, styles_in_order(table, "status")))
    assert table.fixed_columns == 1
    ce = [line.split()[:4] for line in lines if " ce " in line and "finished" in line]
    assert sorted(ce) == sorted([["6060", "finished", "ce", "0"], ["c2e2", "finished", "ce", "2"],
                                 ["c1e1", "finished", "ce", "1"], ["fixture", "finished", "ce", "0"]])
    assert set(colours) == {"running", "finished", "failed", "killed", "cancelled"}
    assert ("yellow" in colours["running"] and "green" in colours["finished"] and "red" in colours["failed"]
            and "magenta" in colours["killed"] and "dim" in colours["cancelled"])


async def test_escape_leaves_the_filter_for_the_table_and_keeps_its_words(busy_store):
    async with on_screen(busy_store, "f3", size=(80, 24)) as (app, pilot):
        await pilot.press("slash", "l", "i", "f", "t")
        await settle(pilot)
        box, table = app.screen.query_one(Input), app.screen.query_one("#runs-table", DataTable)
        assert box.has_focus and [r["method"] for r in shown(app, "runs-table")] == ["lift"]
        await pilot.press("escape")
        assert table.has_focus and box.value == "lift"
        await pilot.press("x")  # a key after Esc no longer lands in the filter
        await settle(pilot)
        assert box.value == "lift" and table.row_count == 1


async def test_o_sorts_by_the_chosen_column_and_s_reverses(busy_store):
    async with on_screen(busy_store, "f3", size=(80, 24)) as (app, pilot):
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, Choose)
        options = [str(app.screen.query_one("#choices").get_option_at_index(i).prompt)
                   for i in range(app.screen.query_one("#choices").option_count)]
        await pilot.press(*["down"] * options.index("overall"), "enter")
        await settle(pilot)
        overall = [r["overall"] for r in shown(app, "runs-table") if r["overall"] != "–"]
        assert overall == sorted(overall, key=float) and len(overall) == 9
        await pilot.press("s")
        await settle(pilot)
        again = [r["overall"] for r in shown(app, "runs-table") if r["overall"] != "–"]
        assert again == sorted(overall, key=float, reverse=True)
        assert "sorted by overall ↓" in str(app.screen.query_one("#runs-note").render())


async def test_c_asks_before_it_cancels(busy_store):
    cancelled = []
    async with on_screen(busy_store, "f3", (80, 24), lambda app: setattr(app, "cancel_run", cancelled.append)) as (
            app, pilot):
        table = app.screen.query_one("#runs-table", DataTable)
        assert shown(app, "runs-table")[0]["id"] == "live"
        table.move_cursor(row=0)
        await pilot.press("c")
        await settle(pilot)
        assert isinstance(app.screen, Confirm) and "mnist-lt-ce-s1-live" in app.screen.question
        await pilot.press("n")
        await settle(pilot)
        assert cancelled == [] and type(app.screen).__name__ == "RunsScreen"
        await pilot.press("c", "y")
        await settle(pilot)
        assert cancelled == ["mnist-lt-ce-s1-live"]
        table.move_cursor(row=[r["id"] for r in shown(app, "runs-table")].index("c1e1"))
        await pilot.press("c")  # a finished run: nothing to ask
        await settle(pilot)
        assert type(app.screen).__name__ == "RunsScreen" and cancelled == ["mnist-lt-ce-s1-live"]


async def test_r_resumes_at_once_a_run_that_has_a_checkpoint(busy_store):
    from lvmbench.runs.rundir import RunDir
    from lvmbench.tui import jobs

    run = RunDir(busy_store[1] / "mnist-lt-ce-s3-20231114-234000-dead")
    run.checkpoint_file.parent.mkdir(parents=True, exist_ok=True)
    run.checkpoint_file.write_bytes(b"checkpoint")
    launched = []
    async with on_screen(busy_store, "f3", (80, 24), lambda app: setattr(app, "launch", launched.append)) as (
            app, pilot):
        app.screen.query_one("#runs-table", DataTable).move_cursor(
            row=[r["id"] for r in shown(app, "runs-table")].index("dead"))
        await pilot.press("R")
        await settle(pilot)
        assert type(app.screen).__name__ == "RunsScreen"
    assert launched == [jobs.LaunchRequest(resume=run.run_id)]
