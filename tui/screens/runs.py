"""Runs: every run in the store, filtered and sorted; Enter opens one (config, evaluation,
per-class accuracy by shot group, cost)."""
from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from ...errors import UserError
from ...rundir import RunDir
from ..jobs import LaunchRequest
from ..results import Result, runs_table
from ..widgets.table import ResultTable
from .detail import RunDetailScreen

EMPTY_HINT = ("No runs stored yet in {path}.\nLaunch one from the Launch screen (F1), or in a shell run "
              "`lvmbench demo` (the embedded benchmark), then `lvmbench ingest` for runs made elsewhere (i here).")


RESUMABLE = ("failed", "killed", "cancelled")


class RunsLoaded(Message):
    def __init__(self, result: Result | None, error: str | None = None):
        super().__init__()
        self.result, self.error = result, error


def preload_evaluate() -> None:
    """Import the evaluation module (scikit-learn, seconds) before a run's details need it."""
    from ... import evaluate  # noqa: F401


def filter_rows(columns: list[str], rows: list[list], text: str) -> list[list]:
    """Keep rows matching every word of ``text``: ``column=value`` (exact, any case) or a substring."""
    index = {c.lower(): i for i, c in enumerate(columns)}
    words = text.lower().split()

    def keep(row) -> bool:
        cells = [("" if v is None else str(v)).lower() for v in row]
        for word in words:
            key, eq, value = word.partition("=")
            if eq and key in index:
                if cells[index[key]] != value:
                    return False
            elif not any(word in c for c in cells):
                return False
        return True

    return [r for r in rows if keep(r)]


def sort_rows(rows: list[list], column: int, reverse: bool = False) -> list[list]:
    """Sort by one column; empty cells last in either direction; numbers before text."""
    present = [r for r in rows if r[column] is not None]
    missing = [r for r in rows if r[column] is None]

    def key(r):
        v = r[column]
        return (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))

    return sorted(present, key=key, reverse=reverse) + missing


class RunsScreen(Screen):
    TITLE = "Runs"
    AUTO_FOCUS = "#runs-table"
    BINDINGS = [Binding("s", "sort_next", "Sort"), Binding("S", "sort_reverse", "Reverse"),
                Binding("i", "ingest", "Ingest runs dir"), Binding("r", "reload", "Reload"),
                Binding("R", "resume", "Resume run"),
                Binding("slash", "focus_filter", "Filter")]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.result: Result | None = None
        self.sort_column, self.sort_reverse = None, False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter: words or column=value, e.g. method=ce status=finished", compact=True,
                    id="runs-filter")
        yield Static("loading…", id="runs-note")
        yield ResultTable(id="runs-table")
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.app, "data_version", lambda _: self.action_reload(), init=False)
        self.action_reload()
        self.run_worker(preload_evaluate, thread=True, group="preload")

    def action_reload(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="runs-load")
    def load(self) -> None:
        results = self.app.results
        if not results.exists():
            self.post_message(RunsLoaded(None))
            return
        try:
            self.post_message(RunsLoaded(runs_table(results)))
        except UserError as exc:
            self.post_message(RunsLoaded(None, str(exc)))

    def on_runs_loaded(self, message: RunsLoaded) -> None:
        self.result = message.result
        self.refill()
        if message.error:
            self.query_one("#runs-note", Static).update(Text(message.error, style="red"))

    def refill(self) -> None:
        note, table = self.query_one("#runs-note", Static), self.query_one(ResultTable)
        if self.result is None or not self.result.rows:
            note.update(Text(EMPTY_HINT.format(path=self.app.results.path)))
            table.display = False
            return
        rows = filter_rows(self.result.columns, self.result.rows, self.query_one("#runs-filter", Input).value)
        if self.sort_column is not None:
            rows = sort_rows(rows, self.sort_column, self.sort_reverse)
        table.display = True
        table.show(self.result.columns, rows, key_index=-1)
        sort = (f" · sorted by {self.result.columns[self.sort_column]}{' ↓' if self.sort_reverse else ' ↑'}"
                if self.sort_column is not None else "")
        more = " (first rows only)" if self.result.truncated else ""
        note.update(f"{len(rows)} of {len(self.result.rows)} runs{more}{sort} · Enter: details")

    def on_input_changed(self, event: Input.Changed) -> None:
        self.refill()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(ResultTable).focus()

    def action_focus_filter(self) -> None:
        self.query_one("#runs-filter", Input).focus()

    def action_sort_next(self) -> None:
        if self.result:
            self.sort_column = 0 if self.sort_column is None else (self.sort_column + 1) % len(self.result.columns)
            self.refill()

    def action_sort_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self.refill()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        if self.sort_column == event.column_index:
            self.sort_reverse = not self.sort_reverse
        self.sort_column = event.column_index
        self.refill()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.app.push_screen(RunDetailScreen(event.row_key.value))

    def action_resume(self) -> None:
        """Continue the highlighted killed, failed or cancelled run from its last checkpoint."""
        table = self.query_one(ResultTable)
        if not table.display or table.row_count == 0:
            return
        run_id = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        status = RunDir(Path(self.app.runs_dir) / run_id).status().get("status")
        if status not in RESUMABLE:
            self.notify(f"{run_id} is {status}: only killed, failed or cancelled runs resume", severity="warning",
                        markup=False)
            return
        self.app.launch(LaunchRequest(resume=run_id))

    @work(thread=True, exclusive=True, group="ingest-all")
    def action_ingest(self) -> None:
        if not Path(self.app.runs_dir).is_dir():
            self.app.call_from_thread(self.notify, f"no runs directory {self.app.runs_dir}", severity="warning",
                                      markup=False)
            return
        try:
            report = self.app.results.ingest_dir(self.app.runs_dir)
        except UserError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error", markup=False)
            return
        self.app.call_from_thread(self.notify, "\n".join([f"{report.summary()} from {self.app.runs_dir}",
                                                          *report.messages()[:5]]),
                                  severity="warning" if report.skipped else "information", markup=False)
        self.app.call_from_thread(self.app.bump_data)
