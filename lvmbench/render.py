"""Print query results and paper-style tables: rich tables, CSV, JSON, Markdown or LaTeX (booktabs)."""
from __future__ import annotations

import csv
import io
import json

from rich import box
from rich.console import Console
from rich.table import Table as RichTable

from .spread import MeanStd, split_columns

FORMATS = ("table", "csv", "json", "markdown", "latex")


def fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, MeanStd) and value.std is not None:
        return f"{fmt(float(value))} ± {fmt(value.std)}"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 0.01 and value != 0 else f"{value:.2f}"
    return str(value)


def render(columns: list[str], rows: list, fmt_name: str = "table", title: str | None = None,
           best: dict | None = None, console: Console | None = None) -> None:
    """Print ``rows`` under ``columns``; in table form the best value per column is bold green."""
    console = console or Console()
    if fmt_name in ("json", "csv"):  # a mean ± std cell becomes two numbers: <column> and <column> std
        columns, rows = split_columns(columns, rows)
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
    elif fmt_name == "latex":
        console.print(to_latex(columns, rows, title, best or {}), markup=False, highlight=False, soft_wrap=True)
    else:
        console.print(rich_table(columns, rows, title, best or {}))


def rich_table(columns: list[str], rows: list, title: str | None, best: dict) -> RichTable:
    """A compact rich table; a Backbone column with one value moves into the title, and a mean's
    ± std goes on a second line of its cell (fits 80 columns)."""
    if "Backbone" in columns and len(rows) and len({r[columns.index("Backbone")] for r in rows}) == 1:
        j = columns.index("Backbone")
        title = f"{title or ''} · {rows[0][j]}".lstrip(" ·")
        columns, rows = columns[:j] + columns[j + 1:], [list(r[:j]) + list(r[j + 1:]) for r in rows]
    table = RichTable(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False,
                      collapse_padding=True)
    for j, c in enumerate(columns):
        numeric = all(isinstance(r[j], (int, float)) or r[j] is None for r in rows)
        width = max([cell_width(r[j]) for r in rows] + ([0] if numeric else [len(c)]))
        table.add_column(c, justify="right" if numeric else "left", min_width=width, no_wrap=True)
    for row in rows:
        table.add_row(*[rich_cell(v, c in best and v == best[c]) for c, v in zip(columns, row)])
    return table


def cell_width(value) -> int:
    if isinstance(value, MeanStd) and value.std is not None:
        return max(len(fmt(float(value))), 1 + len(fmt(value.std)))
    return len(fmt(value))


def rich_cell(value, best: bool) -> str:
    """A cell's rich markup: the best value bold green; a spread under its mean, dimmed."""
    if isinstance(value, MeanStd) and value.std is not None:
        mean = f"[bold green]{fmt(float(value))}[/]" if best else fmt(float(value))
        return f"{mean}\n[dim]±{fmt(value.std)}[/]"
    return f"[bold green]{fmt(value)}[/]" if best else fmt(value)


def to_markdown(columns: list[str], rows: list, title: str | None = None) -> str:
    lines = [f"**{title}**", ""] if title else []
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "—": "---",
                 "±": r"$\pm$", "†": r"$^\dagger$"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def latex_cell(value, best: bool) -> str:
    """A number (bold when best), or mean and std joined by ``$\\pm$``, the mean bold when best."""
    def bold(text: str) -> str:
        return rf"\textbf{{{text}}}" if best else text

    if isinstance(value, MeanStd) and value.std is not None:
        return bold(fmt(float(value))) + r" $\pm$ " + fmt(value.std)
    return bold(latex_escape(fmt(value)) if value is not None else "--")


def to_latex(columns: list[str], rows: list, title: str | None = None, best: dict | None = None,
             notes: list[str] | None = None) -> str:
    """A booktabs table (``\\usepackage{booktabs}``) that pastes into a paper: text columns left,
    numbers right, the best value per column in bold."""
    best = best or {}
    align = "".join("r" if all(isinstance(r[j], (int, float)) or r[j] is None for r in rows) else "l"
                    for j in range(len(columns)))
    lines = [r"\begin{table}[t]", r"\centering"]
    if title:
        lines.append(rf"\caption{{{latex_escape(title)}}}")
    lines += [rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(latex_escape(c) for c in columns) + r" \\",
              r"\midrule"]
    lines += [" & ".join(latex_cell(v, c in best and v is not None and v == best[c]) for c, v in zip(columns, r))
              + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\footnotesize {latex_escape(note)}" for note in notes or []]
    lines.append(r"\end{table}")
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
    best = tables.best_per_column(table)
    if fmt_name == "latex":  # notes go inside the table environment
        console.print(to_latex(table.columns, table.rows, table.title, best, table.notes), markup=False,
                      highlight=False, soft_wrap=True)
        return
    render(table.columns, table.rows, fmt_name, title=table.title, best=best, console=console)
    if fmt_name in ("table", "markdown"):
        for note in table.notes:
            console.print(note, markup=False, highlight=False)
