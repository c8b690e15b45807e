"""A mean over seeds that carries its spread: what a paper reports as mean ± std."""
from __future__ import annotations

SIG3 = "sig3"  # a column's values to three significant digits (the cost table's), not two decimals


class MeanStd(float):
    """The mean of ``n`` values (a float, so sorting and best-of-column work unchanged) with their
    sample standard deviation ``std`` (n − 1 in the denominator; None for a single value)."""

    std: float | None
    n: int

    def __new__(cls, mean: float, std: float | None, n: int):
        obj = super().__new__(cls, mean)
        obj.std = std if n > 1 else None
        obj.n = n
        return obj

    def __repr__(self) -> str:
        return f"MeanStd({float(self)!r}, {self.std!r}, n={self.n})"


def spread(mean, std, n: int):
    """``MeanStd`` for a cell, or None when there is no value."""
    return None if mean is None else MeanStd(mean, std, n)


def split_columns(columns: list[str], rows: list[list]) -> tuple[list[str], list[list]]:
    """For machine-readable output: every column holding a ``MeanStd`` gets a ``<column> std`` column."""
    spread_cols = [j for j, _ in enumerate(columns) if any(isinstance(r[j], MeanStd) for r in rows)]
    if not spread_cols:
        return columns, rows
    out_cols: list[str] = []
    for j, c in enumerate(columns):
        out_cols += [c, f"{c} std"] if j in spread_cols else [c]
    out_rows = []
    for r in rows:
        out = []
        for j, v in enumerate(r):
            out += [None if v is None else float(v), getattr(v, "std", None)] if j in spread_cols else [v]
        out_rows.append(out)
    return out_cols, out_rows
