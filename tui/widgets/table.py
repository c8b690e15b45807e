"""A DataTable filled from columns and rows, numbers formatted as in the CLI's tables."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from lvmbench.api import fmt

TEXT_COLUMNS = {"run", "status", "dataset", "backbone", "method", "Method", "Backbone", "class", "key", "value",
                "split", "group"}


def cell(column: str, value, best: dict | None = None) -> Text:
    """One cell: numbers right-aligned; the best value of its column bold green."""
    text = fmt(value)
    numeric = column not in TEXT_COLUMNS and (value is None or isinstance(value, (int, float))) \
        and not isinstance(value, bool)
    style = "bold green" if best and column in best and value == best[column] else ""
    return Text(text, style=style, justify="right" if numeric else "left")


class ResultTable(DataTable):
    """``show(columns, rows, best)`` replaces the content; a row's key is its ``key_index`` cell's text.

    Showing the content already shown changes nothing: a periodic reload keeps the cursor and the scroll
    position. Column widths are measured here, from the cells, so a table is never drawn with its columns
    cut to the width of their names while Textual has yet to measure new rows."""

    DEFAULT_CSS = "ResultTable { height: 1fr; }"

    def __init__(self, **kwargs):
        super().__init__(zebra_stripes=True, cursor_type="row", **kwargs)
        self.shown: tuple | None = None  # the arguments of the last ``show``

    def show(self, columns: list[str], rows: list[list], best: dict | None = None, key_index: int = 0) -> None:
        content = (list(columns), [list(r) for r in rows], dict(best or {}), key_index)
        if content == self.shown:
            return
        self.shown = content
        self.clear(columns=True)
        labels = [Text(str(c)) for c in columns]  # a name is text, never markup (a query names them)
        cells = [[cell(c, v, best) for c, v in zip(columns, row)] for row in rows]
        for i, label in enumerate(labels):  # measured here: Textual would measure new rows only when idle
            self.add_column(label, width=max([label.cell_len] + [r[i].cell_len for r in cells if i < len(r)]))
        seen: set[str] = set()
        for row, texts in zip(rows, cells):
            key = str(row[key_index])
            key = None if key in seen else key
            seen.add(key)
            self.add_row(*texts, key=key)
