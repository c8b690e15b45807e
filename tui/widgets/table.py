"""A DataTable filled from columns and rows, numbers formatted as in the CLI's tables."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from lvmbench.api import fmt

TEXT_COLUMNS = {"run", "id", "status", "dataset", "backbone", "method", "Method", "Variant", "Dataset", "Backbone",
                "class", "key", "value", "split", "group"}
# a run's status as htop and nvitop colour a process's state
STATUS_STYLES = {"running": "bold yellow", "queued": "yellow", "starting": "yellow", "finished": "green",
                 "failed": "bold red", "killed": "magenta", "cancelled": "dim", "cancelling": "dim"}


def status_style(status: str | None) -> str:
    """The colour of a status cell (``running 150/300`` is running)."""
    return STATUS_STYLES.get(str(status or "").split(" ")[0], "")


def cell(column: str, value, best: dict | None = None, compact: bool = False, digits: str | None = None) -> Text:
    """One cell: numbers right-aligned and rounded as the CLI's tables round them (``digits``: the
    column's precision, ``render.fmt``); the best value of its column bold green; a status coloured.
    ``compact`` writes mean ± std without spaces (a narrow screen)."""
    text = fmt(value, digits)
    if compact:
        text = text.replace(" ± ", "±")
    numeric = column not in TEXT_COLUMNS and (value is None or isinstance(value, (int, float))) \
        and not isinstance(value, bool)
    style = "bold green" if best and column in best and value == best[column] else ""
    if column == "status":
        style = status_style(value)
    return Text(text, style=style, justify="right" if numeric else "left")


class ResultTable(DataTable):
    """``show(columns, rows, best)`` replaces the content; a row's key is its ``key_index`` cell's text.

    Showing the content already shown changes nothing: a periodic reload keeps the cursor and the scroll
    position. Column widths are measured here, from the cells, so a table is never drawn with its columns
    cut to the width of their names while Textual has yet to measure new rows. The first ``fixed`` columns
    stay put while the table scrolls sideways; ``caps`` limits a column's width (longer cells end in …);
    ``labels`` renames headers (e.g. with the direction of a figure); ``digits`` gives a column's precision
    (``tables.Table.digits``); ``ranked`` says which rows may be marked best (default: all)."""

    DEFAULT_CSS = "ResultTable { height: 1fr; }"

    def __init__(self, **kwargs):
        super().__init__(zebra_stripes=True, cursor_type="row", **kwargs)
        self.shown: tuple | None = None  # the arguments of the last ``show``

    def show(self, columns: list[str], rows: list[list], best: dict | None = None, key_index: int = 0,
             fixed: int = 0, caps: dict[str, int] | None = None, labels: dict[str, str] | None = None,
             compact: bool = False, digits: dict[str, str] | None = None, ranked: list[bool] | None = None) -> None:
        content = (list(columns), [list(r) for r in rows], dict(best or {}), key_index, fixed, dict(caps or {}),
                   dict(labels or {}), compact, dict(digits or {}), list(ranked or []))
        if content == self.shown:
            return
        self.shown = content
        self.clear(columns=True)
        self.fixed_columns = fixed
        heads = [Text(str((labels or {}).get(c, c))) for c in columns]  # a name is text, never markup
        ranked = ranked or [True] * len(rows)
        cells = [[cell(c, v, best if may else None, compact, (digits or {}).get(c)) for c, v in zip(columns, row)]
                 for row, may in zip(rows, ranked)]
        for column, head, i in zip(columns, heads, range(len(columns))):  # measured here: Textual would
            width = max([head.cell_len] + [r[i].cell_len for r in cells if i < len(r)])  # measure when idle
            cap = (caps or {}).get(column)
            if cap and width > cap:
                width = cap
                for r in cells:
                    if i < len(r):
                        r[i].truncate(cap, overflow="ellipsis")
            self.add_column(head, width=width)
        seen: set[str] = set()
        for row, texts in zip(rows, cells):
            key = str(row[key_index])
            key = None if key in seen else key
            seen.add(key)
            self.add_row(*texts, key=key)
