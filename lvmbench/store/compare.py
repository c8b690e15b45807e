"""``lvmbench compare A B``: the paired difference of two methods (or two runs) on each test set both were
evaluated on, with its 95 % interval and p-value (a paired bootstrap over test classes, see
:mod:`lvmbench.intervals`), and which cells of a table are not significantly worse than its best."""
from __future__ import annotations

from dataclasses import replace

from ..errors import UserError
from ..intervals import RESAMPLES, paired
from .tables import TEST_SELECTED, Cell, Table, _shown, cells, class_counts

ALPHA = 0.05


def row_name(cell: Cell) -> str:
    """A row as the tables name it: the method (and recipe) and its variant, e.g. ``lade (reference) iters=30``."""
    return " ".join(p for p in (cell.label.removesuffix(f" {TEST_SELECTED}"), cell.variant) if p)


def side(found: list[Cell], name: str) -> dict[tuple[str, str], Cell]:
    """What ``name`` means on each (dataset, backbone): a run id (that run alone) or a row as the tables name
    it, its method and its variant (``lade``, ``lade (reference)``, ``focal γ=1``)."""
    out = {}
    for cell in found:
        run = next((r for r in cell.runs if r["run_id"] == name), None)
        if run is not None:
            return {(cell.dataset, cell.backbone): replace(cell, runs=[run])}
        if row_name(cell) == name:
            out[(cell.dataset, cell.backbone)] = cell
    return out


def compare_table(con, a: str, b: str, dataset: str | None = None, backbone: str | None = None,
                  resamples: int = RESAMPLES) -> Table:
    """One row per (dataset, backbone, metric) where both ``a`` and ``b`` have finished runs."""
    found, _ = _shown(cells(con, dataset, backbone))
    left, right = side(found, a), side(found, b)
    for name, got in ((a, left), (b, right)):
        if not got:
            raise UserError(f"compare: no finished run or method named '{name}' in the results database"
                            + (f" for {dataset}" if dataset else ""))
    shared = [key for key in left if key in right]
    if not shared:
        raise UserError(f"compare: {a} and {b} have no test set in common (no dataset and backbone both ran on)")
    counts = class_counts(con, [c for key in shared for c in (left[key], right[key])])
    rows = []
    for key in shared:
        ca, cb = counts.get(left[key].group), counts.get(right[key].group)
        if ca is None or cb is None:
            raise UserError(f"compare: a run of {a if ca is None else b} on {key[0]} has no per-class test counts "
                            "(stored by an older lvmbench); run it again")
        try:
            diffs = paired(ca, cb, resamples)
        except ValueError as exc:
            raise UserError(f"compare: {a} and {b} on {key[0]}: {exc}") from None
        for d in diffs:
            rows.append([*key, d.metric, d.a, d.b, d.diff, f"[{d.low:.2f}, {d.high:.2f}]", d.p])
    columns = ["Dataset", "Backbone", "Metric", a, b, "Δ", "95 % CI", "p"]
    notes = [f"Δ = {a} - {b}; paired bootstrap over test classes within each shot group (the same classes for "
             f"both), over each side's seeds ({resamples:,} draws, seeded); p: two-sided"]
    return Table(f"{a} vs {b} (test, %)", columns, rows, {}, notes)


def ties_with_best(con, dataset: str, backbone: str | None = None, metric: str = "overall",
                   resamples: int = RESAMPLES, alpha: float = ALPHA) -> set[str]:
    """The rows of ``dataset`` (named as :func:`side` reads them: method and variant) whose ``metric`` is not
    significantly below the best row's (paired bootstrap p >= ``alpha``); the best row is among them. Rows
    without per-class counts are left out."""
    found, _ = _shown([c for c in cells(con, dataset, backbone) if c.mean(metric) is not None])
    counts = class_counts(con, found)
    found = [c for c in found if c.group in counts]
    if not found:
        return set()
    best = max(found, key=lambda c: c.mean(metric))
    tied = {row_name(best)}
    for cell in found:
        if cell is best:
            continue
        try:
            diff = next(d for d in paired(counts[best.group], counts[cell.group], resamples) if d.metric == metric)
        except (ValueError, StopIteration):
            continue
        if diff.p >= alpha:
            tied.add(row_name(cell))
    return tied
