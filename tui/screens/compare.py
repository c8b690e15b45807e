"""Compare: the study's tables for one dataset (main, backbones, memory, cost), the best value of
each column highlighted, exported to Markdown or CSV next to the database; in place of the table, a
scatter of few-shot accuracy against device hours or trainable parameters (``p``, ``x``); ``u``
puts the published figures and the difference under each row of the main and cost tables
(``tables.build(..., published=True)``).

On screen the row's identity (Dataset, Method, Variant) stays put while the figures scroll sideways,
and the figures come before the columns that describe a row (Backbone, Seeds), so that Overall, Many,
Medium and Few fit 80 columns; the highlighted row is named in full under the table."""
from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Select, Static

from lvmbench.api import UserError, tables
from ..results import datasets, export_text
from ..widgets.plots import AXES, CostScatter
from ..widgets.table import ResultTable

ALL = "(all datasets)"
EMPTY = "No finished runs to compare yet: launch some from the Launch screen (F1), or run `lvmbench demo`."
EXPORTS = {"markdown": "md", "csv": "csv"}
IDENTITY = ("Dataset", "Method", "Variant")  # frozen while the table scrolls sideways
DESCRIBING = ("Backbone", "Seeds")  # shown after the figures
CAPS = {"Dataset": 12, "Method": 16, "Variant": 10}  # the full text is under the table
PUBLISHED_KINDS = ("main", "cost")  # the tables ``u`` puts published rows in


def screen_order(table: tables.Table) -> tuple[list[int], int]:
    """The order in which the screen shows ``table``'s columns, and how many of them are frozen."""
    cols = table.columns
    first = [j for j, c in enumerate(cols) if c in IDENTITY]
    last = [j for j, c in enumerate(cols) if c in DESCRIBING]
    return first + [j for j in range(len(cols)) if j not in first and j not in last] + last, len(first)


def direction_labels(table: tables.Table) -> dict[str, str]:
    """Each figure's header with the direction in which it is better (↑ accuracy, ↓ cost)."""
    return {c: f"{c} {'↑' if up else '↓'}" for c, up in table.higher_is_better.items()}


class CompareLoaded(Message):
    def __init__(self, table: tables.Table | None, datasets: list[str], error: str | None = None,
                 points: list[tables.CostPoint] | None = None, plotted: str | None = None):
        super().__init__()
        self.table, self.datasets, self.error = table, datasets, error
        self.points, self.plotted = points or [], plotted  # the scatter's cells and their dataset


def export_path(results_path: Path, kind: str, dataset: str | None, fmt_name: str) -> Path:
    return Path(results_path).parent / f"table-{kind}-{dataset or 'all'}.{EXPORTS[fmt_name]}"


class CompareScreen(Screen):
    TITLE = "Compare"
    BINDINGS = [Binding("m", "export('markdown')", "MD", tooltip="export Markdown"),
                Binding("v", "export('csv')", "CSV", tooltip="export CSV"),
                Binding("p", "toggle_plot", "Plot", tooltip="the table or a scatter of few-shot accuracy vs cost"),
                Binding("x", "toggle_axis", "Axis", tooltip="the scatter's x: device hours or trainable parameters"),
                Binding("u", "toggle_published", "Paper Δ",
                        tooltip="the study's published figures and Δ under each row (main, cost)"),
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
        yield Static("", id="compare-row")
        with Horizontal(id="compare-plot-box"):
            yield CostScatter(id="compare-plot")
            yield Static("", id="compare-legend")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#compare-plot-box").display = False
        self.watch(self.app, "data_version", lambda _: self.action_reload(), init=False)
        self.action_reload()

    def choice(self) -> tuple[str, str | None]:
        kind = str(self.query_one("#compare-kind", Select).value)
        dataset = self.query_one("#compare-dataset", Select).value
        return kind, (None if dataset in (ALL, Select.NULL) else str(dataset))

    def on_select_changed(self, event: Select.Changed) -> None:
        self.refresh_bindings()
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
        grid.display = self.query_one("#compare-row").display = self.query_one("#compare-plot-box").display = False
        if self.error:
            title.update(Text(self.error, style="red"))
        elif self.showing_plot:
            self.draw_plot(title, plot)
        elif self.table is None or not self.table.rows:
            title.update(Text(EMPTY))
        else:
            table = self.table
            title.update(Text.assemble((table.title, "bold"), "  best in green (↑ highest, ↓ lowest)",
                                       *[f"\n{note}" for note in table.notes]))
            grid.display = self.query_one("#compare-row").display = True
            order, fixed = screen_order(table)
            grid.show([table.columns[j] for j in order], [[r[j] for j in order] for r in table.rows],
                      tables.best_per_column(table), fixed=fixed, caps=CAPS, labels=direction_labels(table),
                      compact=True, digits=table.digits, ranked=tables.ranked(table))
            self.describe_row()

    def describe_row(self) -> None:
        """Under the table, the highlighted row's identity in full (the frozen columns may be cut)."""
        grid, table = self.query_one(ResultTable), self.table
        if not table or not table.rows or not grid.row_count:
            return
        row = table.rows[min(grid.cursor_row, len(table.rows) - 1)]
        named = [(c, v) for c, v in zip(table.columns, row) if c in IDENTITY + DESCRIBING and v not in (None, "")]
        self.query_one("#compare-row", Static).update(Text(" · ".join(f"{c}: {v}" for c, v in named),
                                                           style="dim"))

    def on_data_table_row_highlighted(self, event) -> None:
        self.describe_row()

    def draw_plot(self, title: Static, plot: CostScatter) -> None:
        """Few-shot accuracy against the chosen cost, for one dataset (a scatter never pools datasets)."""
        if not self.points:
            pick = self.plotted is None and len(self.known) > 1
            title.update(Text("Choose a dataset to plot: a scatter never pools datasets." if pick else EMPTY))
            return
        self.query_one("#compare-plot-box").display = True
        plot.show(self.points, self.axis)
        self.query_one("#compare-legend", Static).update(plot.legend())
        cost = AXES[self.axis]
        left_out = f"\nnot plotted (no {cost} above 0, or no few-shot figure): " + ", ".join(plot.left_out)
        title.update(Text.assemble((f"Few-shot accuracy vs {cost} — {self.plotted} (test, %)", "bold"),
                                   left_out if plot.left_out else ""))

    def action_toggle_plot(self) -> None:
        self.showing_plot = not self.showing_plot
        self.refresh_bindings()
        self.redraw()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """``x`` only with the scatter, ``u`` only with a table that has published counterparts (every
        footer fits 80 columns)."""
        if action == "toggle_axis":
            return self.showing_plot
        if action == "toggle_published":
            return not self.showing_plot and self.choice()[0] in PUBLISHED_KINDS
        return True

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
            path.write_text(export_text(table.columns, table.rows, fmt_name, title=table.title))
        except OSError as exc:
            self.app.call_from_thread(self.notify, f"cannot write {path}: {exc}", severity="error", markup=False)
            return
        self.app.call_from_thread(self.notify, f"wrote {path}", markup=False)
