"""Compare's scatter: few-shot accuracy against device hours or trainable parameters, one point per
table cell of the chosen dataset, read from the plot widget (the snapshot only shows the layout)."""
from __future__ import annotations

import re

import pytest

from lvmbench.tui.app import LvmbenchApp
from lvmbench.tui.widgets.plots import CostScatter, power_ticks

from .conftest import METHODS, settle

# method: (wall seconds, trainable parameters) written over the fixture store's runs
COSTS = {"zeroshot": (36.0, 0), "ce": (720.0, 64042), "balanced_softmax": (1800.0, 64042), "lade": (3600.0, 70000)}


@pytest.fixture
def store(fixture_store):
    from lvmbench.store import open_writer

    results, _ = fixture_store
    with open_writer(results) as con:
        for method, (wall_s, params) in COSTS.items():
            con.execute("UPDATE runs SET wall_s = ?, trainable_params = ? WHERE method = ?", [wall_s, params, method])
    return fixture_store


async def test_p_plots_few_shot_accuracy_against_hours_and_x_switches_to_parameters(store):
    results, runs_dir = store
    app = LvmbenchApp(results=results, runs_dir=runs_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f4")
        await settle(pilot)
        plot, box = app.screen.query_one(CostScatter), app.screen.query_one("#compare-plot-box")
        assert not box.display
        await pilot.press("p")
        await settle(pilot)
        assert box.display and not app.screen.query_one("#compare-table").display
        few = {m: METHODS[m][3] for m in COSTS}
        assert sorted(plot.plotted) == sorted((m, wall / 3600, few[m]) for m, (wall, _) in COSTS.items())
        assert plot.left_out == []
        assert "device hours" in str(app.screen.query_one("#compare-title").render())

        await pilot.press("x")
        await settle(pilot)
        # zero-shot tunes nothing: no place on a log axis, and the title says so
        assert sorted(plot.plotted) == sorted((m, p, few[m]) for m, (_, p) in COSTS.items() if p)
        assert plot.left_out == ["zeroshot"]
        title = str(app.screen.query_one("#compare-title").render())
        assert "trainable parameters" in title and "not plotted" in title and "zeroshot" in title
        picture = re.sub(r"\x1b\[[0-9;]*m", "", plot.plt.build())
        assert picture == re.sub(r"\x1b\[[0-9;]*m", "", plot.plt.build())  # a redraw draws the same
        # numbered on the picture, named in the legend beside it
        assert sorted(text for text, _, _ in plot.marks) == ["1", "2", "3"] and all(f"●{n}" in picture for n in "123")
        legend = str(app.screen.query_one("#compare-legend").render()).splitlines()
        assert [line.split()[:2] for line in legend] == [[str(i), name] for i, (name, _, _) in enumerate(plot.plotted, 1)]

        await pilot.press("x", "p")
        await settle(pilot)
        assert not box.display and app.screen.query_one("#compare-table").display
        assert plot.plotted[0][1] == COSTS[plot.plotted[0][0]][0] / 3600  # back on hours

        await pilot.press("question_mark")
        await settle(pilot)
        compare = dict(app.screen.sections)["Compare"]
        assert {(b.key, b.description) for b in compare} >= {("p", "Plot"), ("x", "Axis")}


def test_log_ticks_are_powers_of_ten_spanning_the_points():
    assert power_ticks(0.01, 0.5) == ([-2, -1, 0], ["0.01", "0.1", "1"])
    assert power_ticks(1000, 1000) == ([3, 4], ["1k", "10k"])
    assert power_ticks(20, 64042) == ([1, 2, 3, 4, 5], ["10", "100", "1k", "10k", "100k"])


async def test_the_scatter_never_pools_datasets(store):
    from lvmbench.store import open_writer

    results, runs_dir = store
    with open_writer(results) as con:
        con.execute("UPDATE runs SET dataset = 'other' WHERE method = 'lade'")
    app = LvmbenchApp(results=results, runs_dir=runs_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f4", "p")
        await settle(pilot)
        plot, box = app.screen.query_one(CostScatter), app.screen.query_one("#compare-plot-box")
        assert not box.display
        assert "Choose a dataset" in str(app.screen.query_one("#compare-title").render())
        app.screen.query_one("#compare-dataset").value = "mnist-lt"
        await settle(pilot)
        assert box.display and sorted(label for label, _, _ in plot.plotted) == ["balanced_softmax", "ce", "zeroshot"]


def test_marks_of_crowded_points_never_overlap():
    from lvmbench.tui.widgets.plots import crowd_marks

    # a 40 x 10 canvas over x 0..4, y 0..90: points 1 and 3 on one cell, 2 two cells right of them on the same
    # row (its mark would touch theirs), 4 far right on that row, 5 on another row
    xs, ys = [1.0, 1.2, 1.0, 3.0, 1.0], [0.0, 0.0, 0.0, 0.0, 90.0]
    marks = crowd_marks(xs, ys, (0.0, 4.0), (40, 10))
    assert sorted(text for text, _, _ in marks) == ["1,2,3", "4", "5"]
    assert ("4", 3.0, 0.0) in marks and ("5", 1.0, 90.0) in marks
