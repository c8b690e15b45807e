"""SQL: read-only queries over ``results.duckdb`` (the rules of ``lvmbench sql``); results in a table,
errors inline."""
from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from lvmbench.api import UserError
from ..results import MAX_ROWS, Result
from ..widgets.table import ResultTable

HINT = ("Tables: runs, evals (split, overall, many, medium, few, precision, recall, f1), per_class, metrics "
        "(step, key, value), system.\ne.g. SELECT method, avg(overall) FROM runs JOIN evals USING (run_id) "
        "WHERE split = 'test' GROUP BY method")


class QueryDone(Message):
    def __init__(self, result: Result | None, error: str | None = None):
        super().__init__()
        self.result, self.error = result, error


class SqlScreen(Screen):
    TITLE = "SQL"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="SELECT … (read-only; Enter runs it)", compact=True, id="sql-input")
        yield Static(HINT, id="sql-note")
        yield ResultTable(id="sql-result")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one(ResultTable).display = False

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.query_one("#sql-note", Static).update("running…")
            self.run_query(event.value)

    @work(thread=True, exclusive=True, group="sql")
    def run_query(self, sql: str) -> None:
        try:
            self.post_message(QueryDone(self.app.results.console(sql)))
        except UserError as exc:
            self.post_message(QueryDone(None, str(exc)))

    def on_query_done(self, message: QueryDone) -> None:
        note, table = self.query_one("#sql-note", Static), self.query_one(ResultTable)
        if message.error:
            note.update(Text(message.error, style="red"))
            table.display = False
            return
        result = message.result
        more = f" (first {MAX_ROWS} shown)" if result.truncated else ""
        note.update(f"{len(result.rows)} row(s){more}" if result.columns else "done (no rows)")
        table.display = bool(result.columns)
        table.show(result.columns, result.rows)
