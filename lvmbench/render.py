"""Print query results and paper-style tables: rich tables, CSV, JSON or Markdown."""
from __future__ import annotations

import csv
import io
import json

from rich import box
from rich.console import Console
from rich.table import Table as RichTable

FORMATS = ("table", "csv", "json", "markdown")


def fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 0.01 and value != 0 else f"{value:.2f}"
    return str(value)


def render(columns: list[str], rows: list, fmt_name: str = "table", title: str | None = None,
           best: dict | None = None, console: Console | None = None) -> None:
    """Print ``rows`` under ``columns``; in table form the best value per column is bold green."""
    console = console or Console()
    if fmt_name == "json":
        console.print_json(json.dumps([dict(zip(columns, r)) for r in rows], default=str))
    elif fmt_name == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(columns)
        writer.writerows(rows)
        console.print(buf.getvalue(), end="", markup=False, highlight=False, soft_wrap=True)
    elif fmt_name == "markdown":
        console.print(to_markdown(columns, rows, title), markup=False, highlight=False, soft_wrap=True)
    else:
        console.print(rich_table(columns, rows, title, best or {}))


def rich_table(columns: list[str], rows: list, title: str | None, best: dict) -> RichTable:
    """A compact rich table; a Backbone column with one value moves into the title (fits 80 columns)."""
    if "Backbone" in columns and len(rows) and len({r[columns.index("Backbone")] for r in rows}) == 1:
        j = columns.index("Backbone")
        title = f"{title or ''} · {rows[0][j]}".lstrip(" ·")
        columns, rows = columns[:j] + columns[j + 1:], [list(r[:j]) + list(r[j + 1:]) for r in rows]
    table = RichTable(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False,
                      collapse_padding=True)
    for j, c in enumerate(columns):
        numeric = all(isinstance(r[j], (int, float)) or r[j] is None for r in rows)
        width = max([len(fmt(r[j])) for r in rows] + ([0] if numeric else [len(c)]))
        table.add_column(c, justify="right" if numeric else "left", min_width=width, no_wrap=True)
    for row in rows:
        table.add_row(*[f"[bold green]{fmt(v)}[/]" if c in best and v == best[c] else fmt(v)
                        for c, v in zip(columns, row)])
    return table


def to_markdown(columns: list[str], rows: list, title: str | None = None) -> str:
    lines = [f"**{title}**", ""] if title else []
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def print_table(results, kind: str, dataset: str | None = None, backbone: str | None = None,
                carbon_kg_per_kwh: float = 0.544, fmt_name: str = "table", console: Console | None = None) -> None:
    """Print one of the study's table layouts from the results database (``lvmbench table``)."""
    from .store import open_readonly, tables

    console = console or Console()
    with open_readonly(results) as con:
        table = tables.build(con, kind, dataset=dataset, backbone=backbone, carbon_kg_per_kwh=carbon_kg_per_kwh)
    if not table.rows:
        console.print(f"no finished runs{' for ' + dataset if dataset else ''} in the results database")
        return
    render(table.columns, table.rows, fmt_name, title=table.title, best=tables.best_per_column(table), console=console)
    if fmt_name in ("table", "markdown"):
        for note in table.notes:
            console.print(note, markup=False, highlight=False)
