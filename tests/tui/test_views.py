"""What the Runs, detail and Compare screens compute from stored rows."""
from __future__ import annotations

from pathlib import Path

from lvmbench.store.tables import Table
from lvmbench.tui.results import export_text
from lvmbench.tui.screens.compare import export_path
from lvmbench.tui.screens.detail import shot_group_rows
from lvmbench.tui.screens.runs import filter_rows, sort_rows
from lvmbench.tui.widgets.table import cell

COLUMNS = ["status", "method", "seed", "overall"]
ROWS = [["finished", "ce", 0, 88.5], ["failed", "focal", 0, None], ["finished", "lade", 1, 90.4],
        ["cancelled", "ce", 1, None]]


def test_filter_by_column_value_and_by_substring():
    assert filter_rows(COLUMNS, ROWS, "") == ROWS
    assert filter_rows(COLUMNS, ROWS, "method=ce") == [ROWS[0], ROWS[3]]
    assert filter_rows(COLUMNS, ROWS, "method=CE status=finished") == [ROWS[0]]
    assert filter_rows(COLUMNS, ROWS, "la") == [ROWS[2]]  # substring of any cell
    assert filter_rows(COLUMNS, ROWS, "seed=1 ce") == [ROWS[3]]
    assert filter_rows(COLUMNS, ROWS, "nosuch=1") == []  # an unknown column is a substring that matches nothing


def test_sort_puts_empty_cells_last_both_ways():
    assert [r[3] for r in sort_rows(ROWS, 3)] == [88.5, 90.4, None, None]
    assert [r[3] for r in sort_rows(ROWS, 3, reverse=True)] == [90.4, 88.5, None, None]
    assert [r[1] for r in sort_rows(ROWS, 1)] == ["ce", "ce", "focal", "lade"]


def test_shot_groups_and_their_means_by_hand():
    # (class_id, name, n_train, accuracy): many n > 100, medium 20..100, few n < 20
    rows = [[0, "a", 500, 90.0], [1, "b", 101, 80.0], [2, "c", 100, 70.0], [3, "d", 20, 50.0], [4, "e", 19, 30.0],
            [5, "f", 3, 10.0]]
    per_class, summary = shot_group_rows(rows)
    assert [r[0] for r in per_class] == ["many", "many", "medium", "medium", "few", "few"]
    assert per_class[0] == ["many", "a", 500, 90.0]
    assert summary == [["many", 2, 85.0], ["medium", 2, 60.0], ["few", 2, 20.0]]


def test_shot_group_summary_skips_empty_groups():
    assert shot_group_rows([[0, "a", 500, 90.0]])[1] == [["many", 1, 90.0]]
    assert shot_group_rows([]) == ([], [])


def test_exports_use_the_clis_renderer():
    table = Table("Main results — mnist-lt (test, %)", ["Method", "Overall"], [["ce", 88.5], ["lade", None]],
                  {"Overall": True})
    assert export_text(table.columns, table.rows, "markdown", title=table.title).splitlines() == [
        "**Main results — mnist-lt (test, %)**", "", "| Method | Overall |", "|---|---|", "| ce | 88.50 |",
        "| lade | – |"]
    assert export_text(table.columns, table.rows, "csv").splitlines() == ["Method,Overall", "ce,88.5", "lade,"]
    assert export_path(Path("res/results.duckdb"), "main", "mnist-lt", "markdown") == Path("res/table-main-mnist-lt.md")
    assert export_path(Path("results.duckdb"), "cost", None, "csv") == Path("table-cost-all.csv")


def test_best_cell_is_bold_green_and_numbers_align_right():
    best = cell("Overall", 90.4, {"Overall": 90.4})
    assert str(best) == "90.40" and best.style == "bold green" and best.justify == "right"
    assert cell("Overall", 88.5, {"Overall": 90.4}).style == ""
    assert cell("method", "ce").justify == "left"
    assert str(cell("few", None)) == "–" and cell("few", None).justify == "right"  # a missing figure
