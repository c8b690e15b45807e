"""Runs: every run in the store, filtered and sorted; Enter opens one (config, evaluation,
per-class accuracy by shot group, cost). A short id comes first and stays put while the table
scrolls sideways, so that runs that look alike can be told apart at 80 columns; status is coloured;
cancelling asks first, and resuming a run with no checkpoint says that it starts over."""
from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from lvmbench.errors import UserError
from lvmbench.runs.rundir import RESUMABLE, RunDir
from ..jobs import LaunchRequest
from ..results import RUNS_COLUMNS, Result, live_rows, runs_table, short_id
from ..widgets.dialogs import Choose, Confirm
from ..widgets.table import ResultTable
from .detail import RunDetailScreen

EMPTY_HINT = ("No runs stored yet in {path}.\nLaunch one from the Launch screen (F1), or in a shell run "
              "`lvmbench demo` (the embedded benchmark), then `lvmbench ingest` for runs made elsewhere (i here).")


class LiveRows(Message):
    """The runs directory's queued and running runs (and those that ended while watched)."""

    def __init__(self, rows: dict[str, list]):
        super().__init__()
        self.rows = rows


class RunsLoaded(Message):
    def __init__(self, result: Result | None, error: str | None = None):
        super().__init__()
        self.result, self.error = result, error


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
    BINDINGS = [Binding("enter", "open", "Open", show=False),
                Binding("o", "choose_sort", "Sort by", tooltip="sort by a column you choose (or click its header)"),
                Binding("s", "sort_reverse", "Reverse", tooltip="reverse the sort"),
                Binding("c", "cancel", "Cancel", tooltip="cancel the highlighted run (asks first)"),
                Binding("R", "resume", "Resume", tooltip="resume the highlighted killed, failed or cancelled run"),
                Binding("i", "ingest", "Ingest runs dir", show=False), Binding("r", "reload", "Reload", show=False),
                Binding("slash", "focus_filter", "Filter", tooltip="filter: words or column=value"),
                Binding("escape", "leave_filter", "To the list", key_display="esc",
                        tooltip="leave the filter for the list (the filter keeps its words)")]

    def __init__(self, scan_s: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.result: Result | None = None
        self.sort_column, self.sort_reverse = None, False
        self.scan_s = scan_s
        self.live: dict[str, list] = {}  # run id -> row, from the run directories

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter: words or column=value, e.g. method=ce status=finished", compact=True,
                    id="runs-filter")
        yield Static("loading…", id="runs-note")
        yield ResultTable(id="runs-table")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.watch(self.app, "data_version", lambda _: self.action_reload(), init=False)
        self.action_reload()
        self.scan()
        self.set_interval(self.scan_s, self.scan)

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

    @work(thread=True, exclusive=True, group="runs-scan")
    def scan(self) -> None:
        self.post_message(LiveRows(live_rows(self.app.runs_dir, set(self.live))))

    def on_live_rows(self, message: LiveRows) -> None:
        if message.rows == self.live:
            return
        ended = [r for r, row in message.rows.items() if r in self.live and row[0] != self.live[r][0]
                 and not row[0].startswith(("running", "queued"))]
        self.live = message.rows
        self.refill()
        if ended:  # its owner may have stored it: read the database again
            self.load()

    def rows(self) -> tuple[list[str], list[list]]:
        """The stored runs, each replaced by what its directory says while it is live, newest first, each
        with its short id first."""
        stored = self.result.rows if self.result else []
        ids = {row[-1] for row in stored}
        fresh = [row for run_id, row in reversed(self.live.items()) if run_id not in ids]
        every = fresh + [self.live.get(row[-1], row) for row in stored]
        at = {c: RUNS_COLUMNS.index(c) for c in ("dataset", "method", "seed")}
        return ["id"] + RUNS_COLUMNS, [[short_id(r[-1], *(r[at[c]] for c in ("dataset", "method", "seed")))] + r
                                       for r in every]

    def on_runs_loaded(self, message: RunsLoaded) -> None:
        self.result = message.result
        self.refill()
        if message.error:
            self.query_one("#runs-note", Static).update(Text(message.error, style="red"))

    def refill(self) -> None:
        note, table = self.query_one("#runs-note", Static), self.query_one(ResultTable)
        columns, every = self.rows()
        if not every:
            note.update(Text(EMPTY_HINT.format(path=self.app.results.path)))
            table.display = False
            return
        rows = filter_rows(columns, every, self.query_one("#runs-filter", Input).value)
        if self.sort_column is not None:
            rows = sort_rows(rows, self.sort_column, self.sort_reverse)
        elif self.sort_reverse:  # ``s`` before a column is chosen: oldest first
            rows = rows[::-1]
        first = not table.display
        table.display = True
        if first and self.query_one("#runs-filter", Input).has_focus and not self.query_one("#runs-filter", Input).value:
            table.focus()  # Enter opens the highlighted run at once
        cursor = table.cursor_row
        table.show(columns, rows, key_index=-1, fixed=1, caps={"id": 10})
        table.move_cursor(row=min(cursor, max(0, len(rows) - 1)), animate=False)
        sort = (f" · sorted by {columns[self.sort_column]}{' ↓' if self.sort_reverse else ' ↑'}"
                if self.sort_column is not None else " · oldest first" if self.sort_reverse else "")
        more = " (first rows only)" if self.result and self.result.truncated else ""
        note.update(f"{len(rows)} of {len(every)} runs{more}{sort} · Enter: open · ?: help")

    def on_input_changed(self, event: Input.Changed) -> None:
        self.refill()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(ResultTable).focus()

    def action_focus_filter(self) -> None:
        self.query_one("#runs-filter", Input).focus()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """Esc acts (and shows) while the filter has the keys."""
        return action != "leave_filter" or self.query_one("#runs-filter", Input).has_focus

    def on_descendant_focus(self) -> None:
        self.refresh_bindings()

    def action_leave_filter(self) -> None:
        """Esc: back to the table (the filter keeps its words)."""
        self.query_one(ResultTable).focus()

    def action_choose_sort(self) -> None:
        """``o``: sort by the column picked from a list (htop's "Sort by")."""
        columns = self.rows()[0]

        def chosen(index: int | None) -> None:
            if index is not None:
                self.sort_column, self.sort_reverse = index, False
                self.refill()

        self.app.push_screen(Choose("Sort by", columns, self.sort_column), chosen)

    def action_sort_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self.refill()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        if self.sort_column == event.column_index:
            self.sort_reverse = not self.sort_reverse
        self.sort_column = event.column_index
        self.refill()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.open(event.row_key.value)

    def action_open(self) -> None:
        self.open(self.highlighted())

    def open(self, run_id: str | None) -> None:
        """A live run opens on the Live screen, a stored one in its details."""
        if not run_id:
            return
        if run_id in self.live and self.live[run_id][0].startswith(("running", "queued")):
            self.app.follow(run_id)
        else:
            self.app.push_screen(RunDetailScreen(run_id))

    def highlighted(self) -> str | None:
        table = self.query_one(ResultTable)
        if not table.display or table.row_count == 0:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def action_cancel(self) -> None:
        """Cancel the highlighted run, whoever started it (a local run of this user), once confirmed."""
        run_id = self.highlighted()
        if run_id:
            self.app.confirm_cancel(run_id)

    def action_resume(self) -> None:
        """Continue the highlighted killed, failed or cancelled run from its last checkpoint; a run that
        holds none starts over from step 0, and is resumed only once that is confirmed."""
        run_id = self.highlighted()
        if not run_id:
            return
        run = RunDir(Path(self.app.runs_dir) / run_id)
        status = run.status().get("status")
        if status not in RESUMABLE:
            self.notify(f"{run_id} is {status}: only killed, failed or cancelled runs resume", severity="warning",
                        markup=False)
            return
        if run.checkpoint_file.exists():
            self.app.launch(LaunchRequest(resume=run_id))
            return
        self.app.push_screen(
            Confirm(f"{run_id} has no checkpoint: resuming starts it over from step 0. Start it over?"),
            lambda yes: yes and self.app.launch(LaunchRequest(resume=run_id)))

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
