"""Print query results and paper-style tables: rich tables, CSV, JSON, Markdown or LaTeX (booktabs).

Every format prints the data as it is: no value is read as Rich markup or an emoji code, no
column is dropped for want of width (a table wider than the output wraps its text columns, or is
printed at full width when piped), JSON is valid JSON (NaN and infinities are ``null``) and
Markdown escapes ``|`` and line breaks. ``exact=True`` (``lvmbench sql``) prints every value in
full; the paper-style tables round to two decimals, costs to three significant digits (``digits``).
"""
from __future__ import annotations

import unicodedata

import csv
import datetime
import decimal
import io
import json
import math
import sys
import uuid

from rich import box
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from .catalog import CARBON_KG_PER_KWH
from .store.spread import SIG3, extras, split_columns  # noqa: F401 - SIG3 re-exported

FORMATS = ("table", "csv", "json", "markdown", "latex")
NULL = "NULL"  # how ``exact`` output shows a missing value


def output(stderr: bool = False, min_width: int | None = None) -> Console:
    """The console every command prints through: on a terminal it wraps to the terminal's width (at least
    ``min_width``, for reports whose tables need it); to a pipe or a file, text is never hard-wrapped (a
    line stays one line) and tables print at full width (:func:`print_rich_table`)."""
    console = Console(stderr=stderr)
    if min_width and console.width < min_width:
        console = Console(stderr=stderr, width=min_width)
    console.soft_wrap = not console.is_terminal
    return console


def fmt(value, digits: str | None = None) -> str:
    """A value as the paper-style tables show it: two decimals (``digits=SIG3``: three significant
    digits, never in exponent form), '–' for missing."""
    if value is None:
        return "–"
    if extras(value):
        return " ".join([fmt(float(value), digits), *_extra_text(value, lambda v: fmt(v, digits))])
    if isinstance(value, float):
        if digits == SIG3 and math.isfinite(value) and value != 0:
            return f"{value:.{max(0, 2 - math.floor(math.log10(abs(value))))}f}"
        return f"{value:.2f}"
    return str(value)


def _extra_text(value, show=None, gap: str = " ") -> list[str]:
    """A cell's spread (``± std``; ``gap`` after the sign) and interval (``[low, high]``), as text."""
    show = show or fmt
    texts = {"std": lambda: f"±{gap}{show(value.std)}", "ci": lambda: f"[{show(value.ci[0])}, {show(value.ci[1])}]"}
    return [texts[k]() for k in extras(value)]


def exact_text(value) -> str:
    """A value in full: floats to the last digit that tells them apart (``repr``), NULL for missing."""
    if value is None:
        return NULL
    if isinstance(value, float):
        return repr(value)
    return str(value)


def shows(columns: list[str], exact: bool = False, digits: dict | None = None) -> list:
    """How each column shows a value: in full (``exact``), else as :func:`fmt` with the column's ``digits``."""
    digits = digits or {}
    return [exact_text if exact else (lambda v, d=digits.get(c): fmt(v, d)) for c in columns]


def render(columns: list[str], rows: list, fmt_name: str = "table", title: str | None = None,
           best: dict | None = None, console: Console | None = None, exact: bool = False,
           digits: dict | None = None, ranked: list[bool] | None = None) -> None:
    """Print ``rows`` under ``columns``; in table form the best value per column is bold green (only in
    the rows ``ranked`` allows, default all); a column named in ``digits`` (``SIG3``) shows three
    significant digits."""
    console = console or output()
    if fmt_name in ("json", "csv"):  # a mean ± std cell becomes two numbers: <column> and <column> std
        columns, rows = split_columns(columns, rows)
    if fmt_name == "json":
        _write(console, to_json(columns, rows) + "\n")
    elif fmt_name == "csv":
        _write(console, to_csv(columns, rows))
    elif fmt_name == "markdown":
        _write(console, to_markdown(columns, rows, title, exact, digits) + "\n")
    elif fmt_name == "latex":
        _write(console, to_latex(columns, rows, title, best or {}, digits=digits, ranked=ranked) + "\n")
    else:
        print_rich_table(console, rich_table(columns, rows, title, best or {}, exact, digits, ranked))


def _write(console: Console, text: str) -> None:
    """Text as it is: no markup, no emoji codes, no highlighting, no wrapping."""
    console.file.write(text)
    console.file.flush()


def to_csv(columns: list[str], rows: list) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue()


def to_json(columns: list[str], rows: list) -> str:
    """A JSON array of objects; NaN and infinities become null (JSON has no such numbers)."""
    return json.dumps([{c: _jsonable(v) for c, v in zip(columns, r)} for r in rows], indent=2,
                      ensure_ascii=False, allow_nan=False)


def _jsonable(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return None
        as_float = float(value)
        return as_float if decimal.Decimal(repr(as_float)) == value else str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (datetime.date, datetime.time, datetime.timedelta, uuid.UUID)):
        return str(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def to_markdown(columns: list[str], rows: list, title: str | None = None, exact: bool = False,
                digits: dict | None = None) -> str:
    show = shows(columns, exact, digits)
    lines = [f"**{_md(title)}**", ""] if title else []
    lines.append("| " + " | ".join(_md(c) for c in columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    lines += ["| " + " | ".join(_md(s(v)) for s, v in zip(show, r)) + " |" for r in rows]
    return "\n".join(lines)


def _md(text: str) -> str:
    """One table cell: a backslash and '|' escaped, line breaks as <br>."""
    text = str(text).replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("\r\n", "<br>").replace("\n", "<br>").replace("\r", "<br>")


def rich_table(columns: list[str], rows: list, title: str | None, best: dict, exact: bool = False,
               digits: dict | None = None, ranked: list[bool] | None = None) -> RichTable:
    """A compact rich table; a Backbone column with one value moves into the title, and a mean's
    ± std goes on a second line of its cell (fits 80 columns). Numbers never wrap; text columns
    wrap (folding long words) when the output is too narrow. Every cell is text, never markup."""
    if "Backbone" in columns and len(rows) and len({r[columns.index("Backbone")] for r in rows}) == 1:
        j = columns.index("Backbone")
        title = f"{title or ''} · {rows[0][j]}".lstrip(" ·")
        columns, rows = columns[:j] + columns[j + 1:], [list(r[:j]) + list(r[j + 1:]) for r in rows]
    table = RichTable(title=Text(title) if title else None, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False,
                      show_edge=False, collapse_padding=True)
    show = shows(columns, exact, digits)
    for j, c in enumerate(columns):
        if all(_is_number(r[j]) or r[j] is None for r in rows):
            width = max([cell_width(r[j], show[j]) for r in rows] + [0])
            table.add_column(Text(str(c)), justify="right", min_width=width, no_wrap=True)
        else:
            table.add_column(Text(str(c)), justify="left", overflow="fold")
    for row, may in zip(rows, ranked or [True] * len(rows)):
        table.add_row(*[rich_cell(v, may and c in best and v == best[c], s) for c, v, s in zip(columns, row, show)])
    return table


def _is_number(value) -> bool:
    return isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool)


def cell_width(value, show=fmt) -> int:
    if extras(value):
        return max(len(line) for line in [show(float(value)), *_extra_text(value, show, gap="")])
    return len(show(value))


def rich_cell(value, best: bool, show=fmt) -> Text:
    """A cell as text: the best value bold green; a spread under its mean, dimmed."""
    style = "bold green" if best else ""
    if extras(value):
        lines = [(f"\n{line}", "dim") for line in _extra_text(value, show, gap="")]
        return Text.assemble((show(float(value)), style), *lines)
    return Text(show(value), style=style)


def print_rich_table(console: Console, table: RichTable) -> None:
    """Print ``table`` whole. Wider than the output: piped, at its full width (one line per row);
    on a terminal, its text columns wrap, and if even that does not fit, it is printed at the
    width it needs (the terminal wraps the lines) with a note on stderr."""
    natural = console.measure(table, options=console.options.update_width(1_000_000))
    if natural.maximum <= console.width:
        console.print(table)
        return
    if console.is_terminal and natural.minimum <= console.width:
        console.print(table)
        return
    width = natural.maximum if not console.is_terminal else natural.minimum
    wide = Console(file=console.file, width=width, color_system=console.color_system,
                   force_terminal=console.is_terminal, no_color=console.no_color, emoji=False, markup=False,
                   highlight=False)
    wide.print(table)
    if console.is_terminal:
        print(f"note: the table needs {width} columns and the terminal has {console.width}; lines wrap "
              "(--format csv or a wider terminal reads better)", file=sys.stderr)


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "—": "---",
                 "±": r"$\pm$", "†": r"$^\dagger$"}


# Greek capitals that LaTeX names; the others look like Latin letters and are written as them.
GREEK_CAPITALS = ("Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi", "Omega")
GREEK_AS_LATIN = {"Alpha": "A", "Beta": "B", "Epsilon": "E", "Zeta": "Z", "Eta": "H", "Iota": "I", "Kappa": "K",
                  "Mu": "M", "Nu": "N", "Omicron": "O", "Rho": "P", "Tau": "T", "Chi": "X"}


def _latex_char(ch: str) -> str:
    r"""One character as pdflatex takes it: escaped when special, a Greek letter in math mode
    (``Δ`` → ``$\Delta$``; pdflatex rejects Greek text without extra packages), else as it is."""
    if ch in LATEX_SPECIAL:
        return LATEX_SPECIAL[ch]
    name = unicodedata.name(ch, "") if ord(ch) > 127 else ""
    if name.startswith(("GREEK CAPITAL LETTER ", "GREEK SMALL LETTER ")) and len(name.split()) == 4:
        letter = name.split()[-1].capitalize()
        if name.startswith("GREEK SMALL"):
            return "o" if letter == "Omicron" else rf"$\{letter.lower()}$"
        return rf"$\{letter}$" if letter in GREEK_CAPITALS else GREEK_AS_LATIN.get(letter, ch)
    return ch


def latex_escape(text: str) -> str:
    return "".join(map(_latex_char, str(text)))


def latex_cell(value, best: bool, digits: str | None = None) -> str:
    """A number (bold when best), or mean and std joined by ``$\\pm$``, the mean bold when best."""
    def bold(text: str) -> str:
        return rf"\textbf{{{text}}}" if best else text

    if extras(value):
        shown = _extra_text(value, lambda v: fmt(v, digits))
        return " ".join([bold(fmt(float(value), digits)), *(latex_escape(t) for t in shown)])
    return bold(latex_escape(fmt(value, digits)) if value is not None else "--")


def to_latex(columns: list[str], rows: list, title: str | None = None, best: dict | None = None,
             notes: list[str] | None = None, digits: dict | None = None, ranked: list[bool] | None = None) -> str:
    """A booktabs table (``\\usepackage{booktabs}``) that pastes into a paper: text columns left,
    numbers right, the best value per column in bold."""
    best, digits = best or {}, digits or {}
    align = "".join("r" if all(isinstance(r[j], (int, float)) or r[j] is None for r in rows) else "l"
                    for j in range(len(columns)))
    lines = [r"\begin{table}[t]", r"\centering"]
    if title:
        lines.append(rf"\caption{{{latex_escape(title)}}}")
    lines += [rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(latex_escape(c) for c in columns) + r" \\",
              r"\midrule"]
    lines += [" & ".join(latex_cell(v, may and c in best and v is not None and v == best[c], digits.get(c))
                         for c, v in zip(columns, r))
              + r" \\" for r, may in zip(rows, ranked or [True] * len(rows))]
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\footnotesize {latex_escape(note)}" for note in notes or []]
    lines.append(r"\end{table}")
    return "\n".join(lines)


def print_table(results, kind: str, dataset: str | None = None, backbone: str | None = None,
                carbon_kg_per_kwh: float = CARBON_KG_PER_KWH, fmt_name: str = "table", console: Console | None = None,
                published: bool = False, wide: bool = False, ci: bool = False) -> None:
    """Print one of the study's table layouts from the results database (``lvmbench table``): with
    ``published``, each row's published counterpart and the difference; in table form, the columns
    a table marks ``wide_only`` only when they fit the output or with ``wide``; ``ci``: intervals (main)."""
    from .store import open_readonly, tables

    console = console or output()
    with open_readonly(results) as con:
        table = tables.build(con, kind, dataset=dataset, backbone=backbone, carbon_kg_per_kwh=carbon_kg_per_kwh,
                             published=published, ci=ci)
    if not table.rows:
        console.print(f"no finished runs{' for ' + dataset if dataset else ''} in the results database",
                      markup=False, emoji=False, highlight=False)
        return
    print_built(table, fmt_name, console, wide)


def print_built(table, fmt_name: str = "table", console: Console | None = None, wide: bool = False) -> None:
    """Print a built :class:`lvmbench.store.tables.Table`: its rows, then its notes (not in csv or json)."""
    from .store import tables

    console = console or output()
    best = tables.best_per_column(table)
    if fmt_name == "latex":  # notes go inside the table environment
        _write(console, to_latex(table.columns, table.rows, table.title, best, table.notes, table.digits,
                                 tables.ranked(table)) + "\n")
        return
    columns, rows = table.columns, table.rows
    if fmt_name == "table" and not wide and table.wide_only and not fits(console, table):
        keep = [j for j, c in enumerate(columns) if c not in table.wide_only]
        columns, rows = [columns[j] for j in keep], [[r[j] for j in keep] for r in rows]
    render(columns, rows, fmt_name, title=table.title, best=best, console=console, digits=table.digits,
           ranked=tables.ranked(table))
    if fmt_name in ("table", "markdown"):
        for note in table.notes:
            console.print(note, markup=False, emoji=False, highlight=False, soft_wrap=True)


def fits(console: Console, table) -> bool:
    """Whether ``table`` (a ``tables.Table``) prints on one line per row within the output's width."""
    rich = rich_table(table.columns, table.rows, table.title, {}, digits=table.digits)
    return console.measure(rich, options=console.options.update_width(1_000_000)).maximum <= console.width
