"""A mean over seeds that carries its spread: what a paper reports as mean ± std."""
from __future__ import annotations

SIG3 = "sig3"  # a column's values to three significant digits (the cost table's), not two decimals


class MeanStd(float):
    """The mean of ``n`` values (a float, so sorting and best-of-column work unchanged) with their
    sample standard deviation ``std`` (n − 1 in the denominator; None for a single value) and, when
    asked for (``table main --ci``), a confidence interval ``ci = (low, high)``."""

    std: float | None
    n: int
    ci: tuple[float, float] | None

    def __new__(cls, mean: float, std: float | None, n: int, ci: tuple[float, float] | None = None):
        obj = super().__new__(cls, mean)
        obj.std = std if n > 1 else None
        obj.n = n
        obj.ci = ci
        return obj

    def __repr__(self) -> str:
        return f"MeanStd({float(self)!r}, {self.std!r}, n={self.n}, ci={self.ci!r})"


def spread(mean, std, n: int, ci: tuple[float, float] | None = None):
    """``MeanStd`` for a cell, or None when there is no value."""
    return None if mean is None else MeanStd(mean, std, n, ci)


def extras(value) -> list[str]:
    """What a cell shows under its mean, each formatted by the caller: ["std"], ["ci"], both or none."""
    if not isinstance(value, MeanStd):
        return []
    return [k for k, v in (("std", value.std), ("ci", value.ci)) if v is not None]


def split_columns(columns: list[str], rows: list[list]) -> tuple[list[str], list[list]]:
    """For machine-readable output: every column holding a ``MeanStd`` gets a ``<column> std`` column."""
    spread_cols = [j for j, _ in enumerate(columns) if any(isinstance(r[j], MeanStd) for r in rows)]
    if not spread_cols:
        return columns, rows
    ci_cols = {j for j in spread_cols if any(getattr(r[j], "ci", None) for r in rows)}
    out_cols: list[str] = []
    for j, c in enumerate(columns):
        out_cols += ([c, f"{c} std"] + ([f"{c} ci low", f"{c} ci high"] if j in ci_cols else [])
                     if j in spread_cols else [c])
    out_rows = []
    for r in rows:
        out = []
        for j, v in enumerate(r):
            if j not in spread_cols:
                out.append(v)
                continue
            out += [None if v is None else float(v), getattr(v, "std", None)]
            if j in ci_cols:
                out += list(getattr(v, "ci", None) or (None, None))
        out_rows.append(out)
    return out_cols, out_rows
