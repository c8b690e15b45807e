"""SQL: read-only queries over ``results.duckdb`` (the rules of ``lvmbench sql``), written in a
multi-line editor with SQL highlighting (Textual's ``TextArea``), as in harlequin: ``ctrl+r`` (or
ctrl+enter where the terminal tells it apart) runs the query, Up on the first line and Down on the last
(or ctrl+up/down anywhere) step through past queries (kept next to the database), Tab completes table
and column names. Results fill the same table as every screen's; ``ctrl+s`` exports them as CSV
next to the database, ``ctrl+o`` copies the highlighted row. Errors show inline."""
from __future__ import annotations

import re
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, TextArea

from lvmbench.errors import UserError
from ..history import QueryHistory, history_path
from ..results import MAX_ROWS, Result, export_text
from ..widgets.table import ResultTable

HINT = ("Tables: runs, evals (split, overall, many, medium, few, precision, recall, f1), per_class, metrics "
        "(step, key, value), system.\ne.g. SELECT method, avg(overall) FROM runs JOIN evals USING (run_id) "
        "WHERE split = 'test' GROUP BY method")
EXPORT_FILE = "query.csv"
NAMES_SQL = """SELECT DISTINCT table_name, column_name FROM information_schema.columns
               WHERE table_schema = 'main' ORDER BY table_name, column_name"""
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


class QueryDone(Message):
    def __init__(self, result: Result | None, error: str | None = None):
        super().__init__()
        self.result, self.error = result, error


class NamesLoaded(Message):
    """The tables and columns of the database, for completion."""

    def __init__(self, names: list[str]):
        super().__init__()
        self.names = names


def complete(word: str, names: list[str]) -> tuple[str, list[str]]:
    """What Tab adds after ``word`` (the longest prefix the matching names share) and the matches."""
    found = sorted({n for n in names if n.lower().startswith(word.lower()) and len(n) > len(word)})
    if not found:
        return "", []
    shared = found[0]
    for name in found[1:]:
        while not name.lower().startswith(shared.lower()):
            shared = shared[:-1]
    return shared[len(word):], found


class SqlEditor(TextArea):
    """The query editor: its keys run, recall and complete (the screen does each)."""

    BINDINGS = [Binding("ctrl+r,ctrl+enter,ctrl+j", "screen.run", "Run", key_display="^r",
                        tooltip="run the query (ctrl+r; ctrl+enter where the terminal sends it)"),
                Binding("ctrl+up", "screen.history(-1)", "History", key_display="^↑↓",
                        tooltip="the previous query (ctrl+down: the next); Up on the first line, Down on the last too"),
                Binding("ctrl+down", "screen.history(1)", "Next query", show=False),
                Binding("tab", "screen.complete", "Complete", tooltip="complete a table or column name"),
                Binding("escape", "screen.leave_editor", "Leave", key_display="esc",
                        tooltip="leave the editor for the results (then ? and q act; e edits again)")]

    def action_cursor_up(self, select: bool = False) -> None:
        if self.cursor_at_first_line and not select:
            self.screen.action_history(-1)
        else:
            super().action_cursor_up(select)

    def action_cursor_down(self, select: bool = False) -> None:
        if self.cursor_at_last_line and not select:
            self.screen.action_history(1)
        else:
            super().action_cursor_down(select)


class SqlScreen(Screen):
    TITLE = "SQL"
    AUTO_FOCUS = "#sql-editor"
    BINDINGS = [Binding("ctrl+s", "export", "CSV", tooltip=f"export the results as CSV ({EXPORT_FILE} next to "
                                                           f"the database)"),
                Binding("ctrl+o", "copy_row", "Copy row", tooltip="copy the highlighted row (tab-separated)"),
                Binding("e", "focus_editor", "Edit", tooltip="back to the editor")]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.history: QueryHistory | None = None
        self.names: list[str] = []
        self.result: Result | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield SqlEditor("", soft_wrap=True, tab_behavior="focus", show_line_numbers=False,
                        placeholder="SELECT … (read-only; ctrl+r runs it)", id="sql-editor")
        yield Static(HINT, id="sql-note")
        yield ResultTable(id="sql-result")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one(ResultTable).display = False
        self.history = QueryHistory(history_path(self.app.results.path))
        self.call_after_refresh(self.after_first_paint)

    def after_first_paint(self) -> None:
        """What the screen needs only once it shows: the SQL grammar (its highlighting query takes a moment
        to build) and the names to complete (their query loads DuckDB)."""
        self.editor.language = "sql"
        self.load_names()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """Copying a row and ``e`` act from the results table, not from the editor."""
        if action in ("copy_row", "focus_editor"):
            return not self.editor.has_focus
        return True

    def on_descendant_focus(self) -> None:
        self.refresh_bindings()

    def on_descendant_blur(self) -> None:
        self.refresh_bindings()

    @property
    def editor(self) -> SqlEditor:
        return self.query_one(SqlEditor)

    # -- running --------------------------------------------------------------------------------------
    def action_run(self) -> None:
        sql = self.editor.text
        if not sql.strip():
            return
        error = self.history.add(sql)
        if error:
            self.notify(error, severity="warning", markup=False)
        self.query_one("#sql-note", Static).update("running…")
        self.run_query(sql)

    @work(thread=True, exclusive=True, group="sql")
    def run_query(self, sql: str) -> None:
        try:
            self.post_message(QueryDone(self.app.results.console(sql)))
        except UserError as exc:
            self.post_message(QueryDone(None, str(exc)))

    def on_query_done(self, message: QueryDone) -> None:
        note, table = self.query_one("#sql-note", Static), self.query_one(ResultTable)
        self.result = message.result
        if message.error:
            note.update(Text(message.error, style="red"))
            table.display = False
            return
        result = message.result
        more = f" (first {MAX_ROWS} shown)" if result.truncated else ""
        note.update(f"{len(result.rows)} row(s){more}" if result.columns else "done (no rows)")
        table.display = bool(result.columns)
        table.show(result.columns, result.rows)

    # -- history and completion -----------------------------------------------------------------------
    def action_history(self, step: int) -> None:
        """The previous (``step`` -1) or next query of the history in the editor."""
        query = self.history.back(self.editor.text) if step < 0 else self.history.forward()
        if query is not None:
            self.editor.text = query
            self.editor.move_cursor(self.editor.document.end)

    @work(thread=True, exclusive=True, group="sql-names")
    def load_names(self) -> None:
        results = self.app.results
        if not results.exists():
            return
        try:
            rows = results.query(NAMES_SQL, limit=100_000).rows
        except UserError:
            return
        self.post_message(NamesLoaded(sorted({name for row in rows for name in row})))

    def on_names_loaded(self, message: NamesLoaded) -> None:
        self.names = message.names

    def action_complete(self) -> None:
        """Tab: the rest of the table or column name before the cursor (as far as the matches agree)."""
        editor = self.editor
        row, col = editor.cursor_location
        before = editor.document.get_line(row)[:col]
        word = WORD.search(before)
        if not word:
            self.app.action_focus_next()
            return
        rest, found = complete(word.group(), self.names)
        if rest:
            editor.insert(rest)
        note = self.query_one("#sql-note", Static)
        if len(found) > 1:
            note.update(Text("tab: " + ", ".join(found[:20]) + (" …" if len(found) > 20 else ""), style="dim"))
        elif not found:
            note.update(Text(f"tab: no table or column starts with {word.group()}", style="dim"))

    # -- results --------------------------------------------------------------------------------------
    def action_leave_editor(self) -> None:
        """Esc: the results table (or nothing) takes the keys, so that ``?`` and ``q`` act; ``e`` edits again."""
        table = self.query_one(ResultTable)
        if table.display:
            table.focus()
        else:
            self.set_focus(None)

    def action_focus_editor(self) -> None:
        self.editor.focus()

    def action_export(self) -> None:
        if not self.result or not self.result.columns:
            self.notify("nothing to export: run a query first", severity="warning")
            return
        self.write_export(self.result, Path(self.app.results.path).parent / EXPORT_FILE)

    @work(thread=True, group="sql-export")
    def write_export(self, result: Result, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(export_text(result.columns, result.rows, "csv"))
        except OSError as exc:
            self.app.call_from_thread(self.notify, f"cannot write {path}: {exc}", severity="error", markup=False)
            return
        self.app.call_from_thread(self.notify, f"wrote {path}", markup=False)

    def action_copy_row(self) -> None:
        table = self.query_one(ResultTable)
        if not table.display or not table.row_count:
            self.notify("no row to copy", severity="warning")
            return
        row = self.result.rows[table.cursor_row]
        self.app.copy_to_clipboard("\t".join("" if v is None else str(v) for v in row))
        self.notify("copied the highlighted row")
