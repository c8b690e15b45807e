"""Compare: the study's tables for one dataset (main, backbones, memory, cost), the best value of
each column highlighted, exported to Markdown or CSV next to the database; in place of the table, a
scatter of few-shot accuracy against device hours or trainable parameters (``p``, ``x``); ``u``
puts the published figures and the difference under each row of the main and cost tables
(``tables.build(..., published=True)``)."""
from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Select, Static

from lvmbench.errors import UserError
from lvmbench.render import render
from lvmbench.store import tables
from ..results import datasets
from ..widgets.plots import AXES, CostScatter
from ..widgets.table import ResultTable

ALL = "(all datasets)"
EMPTY = "No finished runs to compare yet: launch some from the Launch screen (F1), or run `lvmbench demo`."
EXPORTS = {"markdown": "md", "csv": "csv"}


class CompareLoaded(Message):
    def __init__(self, table: tables.Table | None, datasets: list[str], error: str | None = None,
                 points: list[tables.CostPoint] | None = None, plotted: str | None = None):
        super().__init__()
        self.table, self.datasets, self.error = table, datasets, error
        self.points, self.plotted = points or [], plotted  # the scatter's cells and their dataset


def export_text(table: tables.Table, fmt_name: str) -> str:
    """The table as Markdown or CSV text (the CLI's renderer, written to a string)."""
    buf = io.StringIO()
    render(table.columns, table.rows, fmt_name, title=table.title,
           console=Console(file=buf, width=10_000, color_system=None))
    return buf.getvalue()


def export_path(results_path: Path, kind: str, dataset: str | None, fmt_name: str) -> Path:
    return Path(results_path).parent / f"table-{kind}-{dataset or 'all'}.{EXPORTS[fmt_name]}"


class CompareScreen(Screen):
    TITLE = "Compare"
    BINDINGS = [Binding("m", "export('markdown')", "Markdown"), Binding("v", "export('csv')", "CSV"),
                Binding("p", "toggle_plot", "Plot"), Binding("x", "toggle_axis", "Hours/params"),
                Binding("u", "toggle_published", "Published figures and Δ (main, cost)", show=False),
                Binding("r", "reload", "Reload", show=False)]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.table: tables.Table | None = None
        self.known: list[str] = []
        self.points: list[tables.CostPoint] = []
        self.plotted: str | None = None  # the dataset of ``points``
        self.axis = "hours"  # the scatter's x: a CostPoint field
        self.showing_plot = False
        self.published = False  # the published rows and Δ under each row (``u``)
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="compare-top"):
            yield Select([(k, k) for k in tables.KINDS], value="main", allow_blank=False, compact=True,
                         id="compare-kind")
            yield Select([(ALL, ALL)], value=ALL, allow_blank=False, compact=True, id="compare-dataset")
        yield Static("loading…", id="compare-title")
        yield ResultTable(id="compare-table")
        yield CostScatter(id="compare-plot")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one(CostScatter).display = False
        self.watch(self.app, "data_version", lambda _: self.action_reload(), init=False)
        self.action_reload()

    def choice(self) -> tuple[str, str | None]:
        kind = str(self.query_one("#compare-kind", Select).value)
        dataset = self.query_one("#compare-dataset", Select).value
        return kind, (None if dataset in (ALL, Select.NULL) else str(dataset))

    def on_select_changed(self, event: Select.Changed) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self.load(*self.choice(), self.published)

    def action_toggle_published(self) -> None:
        self.published = not self.published
        self.action_reload()

    @work(thread=True, exclusive=True, group="compare-load")
    def load(self, kind: str, dataset: str | None, published: bool = False) -> None:
        results = self.app.results
        if not results.exists():
            self.post_message(CompareLoaded(None, []))
            return
        try:
            found = datasets(results)
            plotted = dataset or (found[0] if len(found) == 1 else None)  # a scatter never pools datasets
            table, points = results.read(lambda con: (tables.build(con, kind, dataset=dataset, published=published),
                                                      tables.cost_points(con, plotted) if plotted else []))
        except UserError as exc:
            self.post_message(CompareLoaded(None, [], str(exc)))
            return
        self.post_message(CompareLoaded(table, found, points=points, plotted=plotted))

    def on_compare_loaded(self, message: CompareLoaded) -> None:
        self.table, self.error = message.table, message.error
        self.points, self.plotted = message.points, message.plotted
        if message.datasets != self.known:
            self.known = message.datasets
            select = self.query_one("#compare-dataset", Select)
            current = select.value
            with self.prevent(Select.Changed):
                select.set_options([(ALL, ALL)] + [(d, d) for d in message.datasets])
                select.value = current if current in message.datasets else ALL
        self.redraw()

    def redraw(self) -> None:
        """The table, or the scatter in its place (``p``)."""
        title, grid = self.query_one("#compare-title", Static), self.query_one(ResultTable)
        plot = self.query_one(CostScatter)
        grid.display = plot.display = False
        if self.error:
            title.update(Text(self.error, style="red"))
        elif self.showing_plot:
            self.draw_plot(title, plot)
        elif self.table is None or not self.table.rows:
            title.update(Text(EMPTY))
        else:
            table = self.table
            title.update(Text.assemble((table.title, "bold"), "  (best per column in green)",
                                       *[f"\n{note}" for note in table.notes]))
            grid.display = True
            grid.show(table.columns, table.rows, tables.best_per_column(table))

    def draw_plot(self, title: Static, plot: CostScatter) -> None:
        """Few-shot accuracy against the chosen cost, for one dataset (a scatter never pools datasets)."""
        if not self.points:
            pick = self.plotted is None and len(self.known) > 1
            title.update(Text("Choose a dataset to plot: a scatter never pools datasets." if pick else EMPTY))
            return
        plot.show(self.points, self.axis)
        cost = AXES[self.axis]
        left_out = f"\nnot plotted (no {cost} above 0, or no few-shot figure): " + ", ".join(plot.left_out)
        title.update(Text.assemble((f"Few-shot accuracy vs {cost} — {self.plotted} (test, %)", "bold"),
                                   left_out if plot.left_out else ""))
        plot.display = True

    def action_toggle_plot(self) -> None:
        self.showing_plot = not self.showing_plot
        self.redraw()

    def action_toggle_axis(self) -> None:
        self.axis = "params" if self.axis == "hours" else "hours"
        self.redraw()

    def action_export(self, fmt_name: str) -> None:
        if not self.table or not self.table.rows:
            self.notify("nothing to export", severity="warning")
            return
        self.write_export(self.table, fmt_name, export_path(self.app.results.path, *self.choice(), fmt_name))

    @work(thread=True, group="compare-export")
    def write_export(self, table: tables.Table, fmt_name: str, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(export_text(table, fmt_name))
        except OSError as exc:
            self.app.call_from_thread(self.notify, f"cannot write {path}: {exc}", severity="error", markup=False)
            return
        self.app.call_from_thread(self.notify, f"wrote {path}", markup=False)
