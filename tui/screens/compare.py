"""Compare: the study's tables for one dataset (main, backbones, memory, cost), the best value of
each column highlighted, exported to Markdown or CSV next to the database."""
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
from ..widgets.table import ResultTable

ALL = "(all datasets)"
EXPORTS = {"markdown": "md", "csv": "csv"}


class CompareLoaded(Message):
    def __init__(self, table: tables.Table | None, datasets: list[str], error: str | None = None):
        super().__init__()
        self.table, self.datasets, self.error = table, datasets, error


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
                Binding("r", "reload", "Reload", show=False)]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.table: tables.Table | None = None
        self.known: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="compare-top"):
            yield Select([(k, k) for k in tables.KINDS], value="main", allow_blank=False, compact=True,
                         id="compare-kind")
            yield Select([(ALL, ALL)], value=ALL, allow_blank=False, compact=True, id="compare-dataset")
        yield Static("loading…", id="compare-title")
        yield ResultTable(id="compare-table")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.watch(self.app, "data_version", lambda _: self.action_reload(), init=False)
        self.action_reload()

    def choice(self) -> tuple[str, str | None]:
        kind = str(self.query_one("#compare-kind", Select).value)
        dataset = self.query_one("#compare-dataset", Select).value
        return kind, (None if dataset in (ALL, Select.NULL) else str(dataset))

    def on_select_changed(self, event: Select.Changed) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self.load(*self.choice())

    @work(thread=True, exclusive=True, group="compare-load")
    def load(self, kind: str, dataset: str | None) -> None:
        results = self.app.results
        if not results.exists():
            self.post_message(CompareLoaded(None, []))
            return
        try:
            found = datasets(results)
            table = results.read(lambda con: tables.build(con, kind, dataset=dataset))
        except UserError as exc:
            self.post_message(CompareLoaded(None, [], str(exc)))
            return
        self.post_message(CompareLoaded(table, found))

    def on_compare_loaded(self, message: CompareLoaded) -> None:
        self.table = message.table
        if message.datasets != self.known:
            self.known = message.datasets
            select = self.query_one("#compare-dataset", Select)
            current = select.value
            with self.prevent(Select.Changed):
                select.set_options([(ALL, ALL)] + [(d, d) for d in message.datasets])
                select.value = current if current in message.datasets else ALL
        title, grid = self.query_one("#compare-title", Static), self.query_one(ResultTable)
        table = message.table
        if table is None or not table.rows:
            why = Text(message.error, style="red") if message.error else Text(
                "No finished runs to compare yet: launch some from the Launch screen (F1), or run `lvmbench demo`.")
            title.update(why)
            grid.display = False
            return
        title.update(Text.assemble((table.title, "bold"), "  (best per column in green)",
                                   *[f"\n{note}" for note in table.notes]))
        grid.display = True
        grid.show(table.columns, table.rows, tables.best_per_column(table))

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
