"""The values the Runs, detail and Compare screens show for known stored runs (the fixture store),
read from their tables by widget id: snapshots show the layout, these say the numbers are right."""
from __future__ import annotations

import pytest
from contextlib import asynccontextmanager

from textual.widgets import DataTable

from lvmbench.tui.app import LvmbenchApp

from .conftest import FIXTURE_METHODS, METHODS
from .test_snapshots import settle


VAL_SHIFT = 5.0


@pytest.fixture
def store(fixture_store):
    """The fixture store with validation figures 5 points below the test ones, so that showing the
    wrong split cannot pass."""
    from lvmbench.store import open_writer

    results, _ = fixture_store
    with open_writer(results) as con:
        con.execute("UPDATE evals SET overall = overall - ?, few = few - ? WHERE split = 'val'", [VAL_SHIFT] * 2)
    return fixture_store


def shown(app, widget_id: str) -> list[dict[str, str]]:
    """The rows of a table on the current screen as {column label: text shown}."""
    table = app.screen.query_one(f"#{widget_id}", DataTable)
    labels = [str(c.label) for c in table.columns.values()]
    return [dict(zip(labels, (cell.plain for cell in table.get_row_at(i)))) for i in range(table.row_count)]


def styles(app, widget_id: str, column: str) -> dict[str, str]:
    """{first cell of the row: style of ``column``'s cell} of a table on the current screen."""
    table = app.screen.query_one(f"#{widget_id}", DataTable)
    labels = [str(c.label) for c in table.columns.values()]
    j = labels.index(column)
    return {table.get_row_at(i)[0].plain: str(table.get_row_at(i)[j].style) for i in range(table.row_count)}


@asynccontextmanager
async def on_screen(store, key: str, size=(160, 40), prepare=None):
    """The app on the fixture store (``prepare(app)`` first, if given), switched to a screen by its function
    key, workers done."""
    results, runs_dir = store
    app = LvmbenchApp(results=results, runs_dir=runs_dir)
    if prepare:
        prepare(app)
    async with app.run_test(size=size) as pilot:
        await pilot.press(key)
        await settle(pilot)
        yield app, pilot


async def test_runs_screen_shows_each_stored_run_and_its_test_figures(store):
    async with on_screen(store, "f3") as (app, _):
        rows = shown(app, "runs-table")
    # the running run (read from its directory) first, then the stored ones newest first
    assert [r["run"] for r in rows] == ["mnist-lt-ce-s1-live"] + [
        f"mnist-lt-{m}-s0-fixture" for m in ("focal", "lade", "balanced_softmax", "ce", "zeroshot")]
    assert rows[0]["status"].startswith("running") and (rows[0]["method"], rows[0]["seed"]) == ("ce", "1")
    by_method = {r["method"]: r for r in rows[1:]}
    for method in FIXTURE_METHODS:
        overall, _, _, few, _, _, _, s_iter, peak = METHODS[method]
        row = by_method[method]
        assert (row["status"], row["dataset"], row["backbone"], row["seed"]) == ("finished", "mnist-lt", "tiny-clip", "0")
        assert (row["overall"], row["few"], row["peak MiB"]) == (f"{overall:.2f}", f"{few:.2f}", f"{peak:.2f}")
        assert row["s/iter"] == ("–" if s_iter is None else f"{s_iter:.2f}")  # two decimals from 0.01 up
        assert row["run"] == f"mnist-lt-{method}-s0-fixture"
    failed = by_method["focal"]
    assert (failed["status"], failed["overall"], failed["few"]) == ("failed", "–", "–")


async def test_detail_screen_shows_the_runs_evaluation_groups_and_cost(store):
    async with on_screen(store, "f3", size=(160, 60)) as (app, pilot):
        table = app.screen.query_one("#runs-table", DataTable)
        table.move_cursor(row=[r["run"] for r in shown(app, "runs-table")].index("mnist-lt-ce-s0-fixture"))
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen.sub_title == "mnist-lt-ce-s0-fixture"
        head = str(app.screen.query_one("#detail-head").render())
        evals, groups = shown(app, "detail-evals"), shown(app, "detail-groups")
        classes = shown(app, "detail-classes")
        cost = {r["key"]: r["value"] for r in shown(app, "detail-cost")}
        configured = {r["key"]: r["value"] for r in shown(app, "detail-config")}
    assert "finished · mnist-lt · tiny-clip (embedded) · ce · seed 0" in head
    assert [(r["split"], r["overall"], r["many"], r["medium"], r["few"], r["f1"], r["worst_class"], r["n_samples"])
            for r in evals] == [("val", "83.50", "97.00", "88.00", "71.30", "88.20", "66.30", "1000"),
                                ("test", "88.50", "97.00", "88.00", "76.30", "88.20", "66.30", "1000")]
    # train counts 500, 300, 180, 110 | 60, 35, 20 | 12, 7, 4: four many-, three medium-, three few-shot classes
    assert [(r["group"], r["classes"], r["mean accuracy"]) for r in groups] == [
        ("many", "4", "97.00"), ("medium", "3", "88.00"), ("few", "3", "76.30")]
    assert [(r["group"], r["n_train"]) for r in classes][:5] == [
        ("many", "500"), ("many", "300"), ("many", "180"), ("many", "110"), ("medium", "60")]
    assert (cost["s/iter"], cost["peak memory (MiB)"], cost["iterations"], cost["trainable params"]) == (
        "0.02", "520.00", "300", "64042")
    assert (configured["method"], configured["train.iters"], configured["seed"]) == ("ce", "300", "0")


async def test_compare_screen_shows_the_main_table_with_the_best_in_green(store):
    async with on_screen(store, "f4") as (app, _):
        rows = shown(app, "compare-table")
        overall_style, few_style = styles(app, "compare-table", "Overall ↑"), styles(app, "compare-table", "Few ↑")
    # baselines first, then the imbalanced methods; the failed run is not a result
    assert [r["Method"] for r in rows] == ["zeroshot", "ce", "balanced_softmax", "lade"]
    for row in rows:
        overall, many, medium, few, precision, recall, f1 = METHODS[row["Method"]][:7]
        assert [row[c] for c in ("Seeds", "Overall ↑", "Many ↑", "Medium ↑", "Few ↑", "Precision ↑", "Recall ↑",
                                 "F1 ↑")] == [
            "1", *(f"{v:.2f}" for v in (overall, many, medium, few, precision, recall, f1))]
    assert {m for m, s in overall_style.items() if "green" in s} == {"balanced_softmax"}  # 91.2
    assert {m for m, s in few_style.items() if "green" in s} == {"balanced_softmax"}  # 87.6


async def test_compare_toggles_the_published_numbers_with_u(store):
    from textual.widgets import Static

    async with on_screen(store, "f4") as (app, pilot):
        await pilot.press("u")
        await settle(pilot)
        title = str(app.screen.query_one("#compare-title", Static).render())
        rows = shown(app, "compare-table")
        await pilot.press("u")
        await settle(pilot)
        again = str(app.screen.query_one("#compare-title", Static).render())
    # the fixture store is mnist-lt's: nothing was published for it, and the table says so
    assert "no published counterpart" in title and "ce (tiny-clip)" in title
    assert [r["Method"] for r in rows] == ["zeroshot", "ce", "balanced_softmax", "lade"]
    assert "no published counterpart" not in again
