"""Live at 80x24 and 160x45, read from the widgets: each plot gets at least MIN_PLOT_ROWS rows (one at a
time where four do not fit, ``v`` switches), legends sit under the plots, progress belongs to the run
shown, and a time axis spans real samples only."""
from __future__ import annotations

import re

from textual.app import App

from lvmbench.tui.follow import Series
from lvmbench.tui.screens.live import MIN_PLOT_ROWS, PLOTS
from lvmbench.tui.widgets.plots import SeriesPlot

from .conftest import make_run, settle
from .test_values import on_screen

FRAME_ROWS = 5  # a plot's title, top and bottom frame, ticks and axis name


def shown_panels(app) -> list[str]:
    return [key for key, _, _ in PLOTS if app.screen.query_one(f"#panel-{key}").display]


def picture(plot: SeriesPlot) -> list[str]:
    return re.sub(r"\x1b\[[0-9;]*m", "", plot.plt.build()).splitlines()


async def test_at_80x24_one_plot_at_a_time_and_v_shows_the_next(fixture_store):
    async with on_screen(fixture_store, "f2", size=(80, 24)) as (app, pilot):
        assert shown_panels(app) == ["loss"]
        assert app.screen.query_one("#plot-loss").size.height >= MIN_PLOT_ROWS + FRAME_ROWS
        seen = []
        for _ in PLOTS:
            await pilot.press("v")
            await settle(pilot)
            seen.append(shown_panels(app))
        assert seen == [["val"], ["mem"], ["power"], ["loss"]]  # the four never fit: round to the first
        assert app.screen.query_one("#plot-val").size.height == 0  # hidden


async def test_at_160x45_four_plots_each_readable_and_v_enlarges_one(fixture_store):
    async with on_screen(fixture_store, "f2", size=(160, 45)) as (app, pilot):
        assert shown_panels(app) == ["loss", "val", "mem", "power"]
        for key, _, _ in PLOTS:
            assert app.screen.query_one(f"#plot-{key}").size.height >= MIN_PLOT_ROWS + FRAME_ROWS
        await pilot.press("v")
        await settle(pilot)
        assert shown_panels(app) == ["loss"]
        await pilot.press("v", "v", "v", "v")
        await settle(pilot)
        assert shown_panels(app) == ["loss", "val", "mem", "power"]


async def test_legends_are_under_the_plots_never_on_the_curves(fixture_store):
    async with on_screen(fixture_store, "f2", size=(160, 45)) as (app, _):
        legends = {key: str(app.screen.query_one(f"#legend-{key}").render()) for key, _, _ in PLOTS}
        loss = picture(app.screen.query_one("#plot-loss", SeriesPlot))
    assert legends["loss"] == "━━ loss  ━━ lr (right axis)" and legends["val"] == "━━ overall  ━━ few"
    assert legends["mem"] == "━━ MiB"
    assert "loss" in loss[0] and not any("loss" in line or " lr" in line for line in loss[1:])  # title only


async def test_a_run_that_starts_shows_its_own_progress_not_the_previous_runs(fixture_store):
    results, runs_dir = fixture_store
    make_run(runs_dir, "mnist-lt-ce-s9-zzz-queued", "ce", seed=9, status="queued")  # sorts first: shown first
    async with on_screen(fixture_store, "f2", size=(80, 24)) as (app, pilot):
        screen = app.screen
        assert screen.current == "mnist-lt-ce-s9-zzz-queued"
        screen.select("mnist-lt-ce-s1-live")
        await settle(pilot)
        assert str(screen.query_one("#progress-text").render()).startswith("step 150/300 · ETA 0:15")
        screen.action_cycle(-1)  # back to the run that has not started: at once, before its files are read
        assert screen.current == "mnist-lt-ce-s9-zzz-queued"
        assert str(screen.query_one("#progress-text").render()) == "starting… (no step yet)"
        await settle(pilot)
        assert str(screen.query_one("#progress-text").render()) == "step 0/300 · ETA –"
        assert screen.query_one("#plot-loss", SeriesPlot).drawn == []


class OnePlot(App):
    def compose(self):
        yield SeriesPlot("memory (MiB)", "seconds", id="p")


async def test_a_time_axis_spans_real_samples_only():
    app = OnePlot()
    async with app.run_test(size=(60, 16)) as pilot:
        plot = app.query_one(SeriesPlot)
        one = Series()
        one.add(0.0, 800.0)
        plot.show([("MiB", one, "left")])
        await pilot.pause()
        assert plot.drawn == [] and "(1 sample)" in picture(plot)[0]  # no axis made up around one point
        one.add(4.0, 820.0)
        plot.show([("MiB", one, "left")])
        await pilot.pause()
        ticks = picture(plot)[-2]
        assert plot.drawn and float(ticks.split()[0]) == 0 and float(ticks.split()[-1]) == 4 and "-" not in ticks
