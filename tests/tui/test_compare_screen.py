"""Compare on a researcher's store (a dozen runs, a variant, three seeds), read from the screen and the
table widget: the figures fit 80 columns, the row's name stays put while the table scrolls, the best of
each column is marked in its direction, and the published numbers come and go with a key."""
from __future__ import annotations

from textual.widgets import DataTable, Footer
from textual.widgets._footer import FooterKey

from .conftest import screen_text, settle
from .test_values import on_screen, shown, styles


def line_of(lines: list[str], text: str) -> str:
    found = [line for line in lines if text in line]
    assert found, f"{text!r} not on screen:\n" + "\n".join(lines)
    return found[0]


async def test_at_80x24_the_first_rows_show_overall_many_medium_few_and_the_method_stays_when_scrolled(busy_store):
    async with on_screen(busy_store, "f4", size=(80, 24)) as (app, pilot):
        table = app.screen.query_one("#compare-table", DataTable)
        heads = [str(c.label) for c in table.columns.values()]
        assert heads[:6] == ["Method", "Variant", "Overall ↑", "Many ↑", "Medium ↑", "Few ↑"]
        assert table.fixed_columns == 2 and heads[-2:] == ["Backbone", "Seeds"]  # descriptions after the figures
        lines = screen_text(app)
        assert line_of(lines, "zeroshot").split()[-4:] == ["61.00", "62.00", "60.50", "60.00"]  # none cut
        # ce over three seeds: mean ± std, written without spaces to fit
        assert line_of(lines, "76.43±0.23").split()[-4:] == ["88.63±0.23", "97.13±0.23", "88.13±0.23", "76.43±0.23"]

        table.scroll_to(x=table.max_scroll_x, animate=False)
        await settle(pilot)
        assert table.scroll_x > 0
        lines = screen_text(app)
        row = line_of(lines, "zeroshot")
        assert row.split()[0] == "zeroshot" and "60.20" in row and "tiny-clip" in row  # F1 and Backbone, scrolled


async def test_the_highlighted_row_is_named_in_full_under_the_table(busy_store):
    async with on_screen(busy_store, "f4", size=(80, 24)) as (app, pilot):
        rows = shown(app, "compare-table")
        table = app.screen.query_one("#compare-table", DataTable)
        variant = next(i for i, r in enumerate(rows) if r["Method"] == "lift")
        assert rows[variant]["Variant"].endswith("…")  # cut to fit
        table.move_cursor(row=variant)
        await settle(pilot)
        described = str(app.screen.query_one("#compare-row").render())
        full = app.screen.table.rows[variant][app.screen.table.columns.index("Variant")]
        assert "iters=300" in full and f"Method: lift · Variant: {full} · Backbone: tiny-clip · Seeds: 1" == described


async def test_at_160x45_every_column_is_on_screen(busy_store):
    async with on_screen(busy_store, "f4", size=(160, 45)) as (app, pilot):
        head = line_of(screen_text(app), "Overall ↑")
        for column in ("Method", "Variant", "Overall ↑", "Many ↑", "Medium ↑", "Few ↑", "Precision ↑", "Recall ↑", "F1 ↑",
                       "Backbone", "Seeds"):
            assert column in head
        assert app.screen.query_one("#compare-table", DataTable).max_scroll_x == 0


async def test_the_lowest_cost_is_marked_best(busy_store):
    async with on_screen(busy_store, "f4", size=(160, 45)) as (app, pilot):
        app.screen.query_one("#compare-kind").value = "cost"
        await settle(pilot)
        per_iter, overall = styles(app, "compare-table", "s/iter ↓"), None
        app.screen.query_one("#compare-kind").value = "main"
        await settle(pilot)
        overall = styles(app, "compare-table", "Overall ↑")
    # ce, at 300 and at 60 steps, takes 0.021 s a step, the least; lift the most
    assert {m for m, style in per_iter.items() if "green" in style} == {"ce"}
    assert {m for m, style in overall.items() if "green" in style} == {"lift"}  # 92.1: the highest


async def test_u_for_the_published_numbers_is_offered_on_the_tables_that_have_them(busy_store):
    def footer(app) -> list[str]:
        return [key.description for key in app.screen.query_one(Footer).query(FooterKey)]

    async with on_screen(busy_store, "f4", size=(80, 24)) as (app, pilot):
        assert "Paper Δ" in footer(app)  # the main table
        app.screen.query_one("#compare-kind").value = "memory"
        await settle(pilot)
        assert "Paper Δ" not in footer(app)  # nothing published to compare with
        app.screen.query_one("#compare-kind").value = "cost"
        await settle(pilot)
        assert "Paper Δ" in footer(app)
        await pilot.press("p")
        await settle(pilot)
        assert "Paper Δ" not in footer(app) and "Axis" in footer(app)  # the scatter's keys instead


def published_store(tmp_path):
    """An ImageNet-LT ce run (ViT-L-14, openai) whose overall accuracy equals the study's Table 1 (75.05)."""
    from lvmbench import config
    from lvmbench.store import open_writer
    from lvmbench.store.ingest import ingest_dir

    from ..conftest import finish

    runs, results = tmp_path / "runs", tmp_path / "results.duckdb"
    finish(runs, config.resolve("imagenet-lt", "ViT-L-14", "ce", pretrained="openai", data_root=str(tmp_path)),
           overall=75.05)
    with open_writer(results) as con:
        ingest_dir(con, runs)
    return results, runs


async def test_published_and_delta_rows_are_never_marked_best_and_costs_read_as_in_the_cli(tmp_path):
    async with on_screen(published_store(tmp_path), "f4", size=(160, 45)) as (app, pilot):
        await pilot.press("u")
        await settle(pilot)
        overall = styles(app, "compare-table", "Overall ↑")
        assert overall["↳ published"] == "" and "green" in overall["ce"]  # both 75.05: only yours is best
        app.screen.query_one("#compare-kind").value = "cost"
        await settle(pilot)
        rows = {r["Method"]: r for r in shown(app, "compare-table")}
        per_iter = styles(app, "compare-table", "s/iter ↓")
    assert rows["ce"]["s/iter ↓"] == "0.00825"  # three significant digits, as `lvmbench table cost` prints it
    assert "green" in per_iter["ce"] and "green" not in per_iter["↳ published"] + per_iter["↳ Δ"]
