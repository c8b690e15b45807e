"""The study's table layouts as SQL over the store (every figure comes from a stored record).

Each table uses the latest finished run per (dataset, backbone, pretrained, recipe, method, seed)
and averages over seeds; the ``seeds`` column says how many runs a row averages, and every accuracy
cell of several seeds carries its sample standard deviation (shown as mean ± std). Runs of different
recipes are never averaged together: a method under a recipe other than ``paper`` is its own row,
e.g. "lade (reference)". A row whose weights were selected on the test split is marked with a dagger
and the table says so in a note.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..catalog import METHODS
from ..spread import spread

LATEST = """
    SELECT * FROM runs WHERE status = 'finished'
    QUALIFY row_number() OVER (PARTITION BY dataset, backbone, pretrained, recipe, method, seed
                               ORDER BY ended_at DESC, run_id DESC) = 1
"""
KINDS = ("main", "backbones", "memory", "cost", "recipes")
# A method as the tables name it: under recipe=paper (the default) its name, otherwise "name (recipe)".
METHOD_LABEL = ("r.method || CASE WHEN r.recipe = 'paper' THEN '' "
                "ELSE ' (' || coalesce(r.recipe, 'no recipe') || ')' END")
TEST_SELECTED = "†"
TEST_SELECTED_NOTE = f"{TEST_SELECTED} selected on the test split, as the study's code does"
# A backbone as the tables name it: weights other than the default ones are shown, e.g. "ViT-L-14 (laion2b_s32b_b82k)".
BACKBONE_LABEL = ("r.backbone || CASE WHEN r.pretrained NOT IN ('openai', 'embedded') "
                  "THEN ' (' || r.pretrained || ')' ELSE '' END")
METHOD_ORDER = {name: i for i, name in enumerate(METHODS)}
ACCURACY = ("overall", "many", "medium", "few", "precision", "recall", "f1")  # evals columns, in percent


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list]
    higher_is_better: dict[str, bool]
    notes: list[str] = field(default_factory=list)


def _filters(dataset: str | None, backbone: str | None) -> tuple[str, list]:
    where, params = [], []
    if dataset:
        where.append("r.dataset = ?")
        params.append(dataset)
    if backbone:
        where.append("r.backbone = ?")
        params.append(backbone)
    return (" AND ".join(where) or "TRUE"), params


def _sort(rows: list[list]) -> list[list]:
    return sorted(rows, key=lambda r: (METHOD_ORDER.get(r[0].split(" ")[0], len(METHOD_ORDER)), r[0],
                                       *map(str, r[1:2])))


def _mark_test_selected(rows: list[list]) -> list[str]:
    """Rows whose last field says some run was selected on the test split get a dagger on their method;
    return the table's notes. The flag is dropped from every row."""
    marked = False
    for row in rows:
        if row.pop():
            row[0] += f" {TEST_SELECTED}"
            marked = True
    return [TEST_SELECTED_NOTE] if marked else []


def main_table(con, dataset=None, backbone=None, **_) -> Table:
    """Methods × Overall / Many / Medium / Few / Precision / Recall / F1 (test split)."""
    where, params = _filters(dataset, backbone)
    stats = ", ".join(f"avg(e.{c}), stddev_samp(e.{c}), count(e.{c})" for c in ACCURACY)
    data = con.execute(f"""
        SELECT {METHOD_LABEL} AS m, {BACKBONE_LABEL} AS bb, count(*) AS seeds, {stats},
               bool_or(coalesce(r.selected_on = 'test', false))
        FROM ({LATEST}) r JOIN evals e ON e.run_id = r.run_id AND e.split = 'test'
        WHERE {where} GROUP BY m, bb""", params).fetchall()
    rows = _sort([[m, bb, n, *[spread(*r[i:i + 3]) for i in range(0, len(r) - 1, 3)], r[-1]]
                  for m, bb, n, *r in data])
    notes = _mark_test_selected(rows)
    cols = ["Method", "Backbone", "Seeds", "Overall", "Many", "Medium", "Few", "Precision", "Recall", "F1"]
    return Table(f"Main results{_title(dataset, backbone)} (test, %)", cols, rows, {c: True for c in cols[3:]}, notes)


def _pivot(con, value_sql: str, title: str, better: bool, dataset, join_evals: bool) -> Table:
    where, params = _filters(dataset, None)
    join = "JOIN evals e ON e.run_id = r.run_id AND e.split = 'test'" if join_evals else ""
    data = con.execute(f"""
        SELECT {METHOD_LABEL} AS m, {BACKBONE_LABEL} AS bb, avg({value_sql}), stddev_samp({value_sql}),
               count({value_sql})
        FROM ({LATEST}) r {join} WHERE {where} GROUP BY m, bb""", params).fetchall()
    # accuracies carry their spread over seeds; costs stay plain means
    data = [(m, bb, spread(v, sd, n) if join_evals else v) for m, bb, v, sd, n in data]
    backbones = sorted({bb for _, bb, _ in data})
    cells = {(m, bb): v for m, bb, v in data}
    rows = _sort([[m] + [cells.get((m, bb)) for bb in backbones] for m in sorted({m for m, _, _ in data})])
    return Table(title + _title(dataset, None), ["Method", *backbones], rows, {bb: better for bb in backbones})


def backbones_table(con, dataset=None, **_) -> Table:
    """Method × backbone overall accuracy (the study's Tables 4–6)."""
    return _pivot(con, "e.overall", "Overall accuracy by backbone", True, dataset, join_evals=True)


def memory_table(con, dataset=None, **_) -> Table:
    """Peak memory (MiB) by method and backbone (the study's Table 7)."""
    return _pivot(con, "r.peak_mem_mib", "Peak memory (MiB) by backbone", False, dataset, join_evals=False)


def cost_table(con, dataset=None, backbone=None, carbon_kg_per_kwh: float = 0.544, **_) -> Table:
    """s/iter, GPU hours, average W, kWh, kg CO2 per method (the study's Table 8)."""
    where, params = _filters(dataset, backbone)
    rows = con.execute(f"""
        SELECT {METHOD_LABEL} AS m, {BACKBONE_LABEL} AS bb, count(*), avg(r.s_per_iter), avg(r.wall_s) / 3600.0,
               avg(r.avg_power_w), avg(r.energy_kwh), avg(r.energy_kwh) * ?
        FROM ({LATEST}) r WHERE {where} GROUP BY m, bb""", [carbon_kg_per_kwh, *params]).fetchall()
    cols = ["Method", "Backbone", "Seeds", "s/iter", "GPU hours", "Avg W", "kWh", "kg CO2"]
    return Table(f"Cost{_title(dataset, backbone)} ({carbon_kg_per_kwh} kg CO2/kWh)", cols,
                 _sort([list(r) for r in rows]), {c: False for c in cols[3:]})


def recipes_table(con, dataset=None, backbone=None, **_) -> Table:
    """Per method: test overall and few-shot accuracy under ``paper`` and ``reference`` and their
    difference (reference - paper): what the study's quirks cost each method."""
    where, params = _filters(dataset, backbone)
    rows = con.execute(f"""
        WITH cell AS (
            SELECT r.method, {BACKBONE_LABEL} AS bb, r.recipe, avg(e.overall) AS overall, avg(e.few) AS few,
                   bool_or(coalesce(r.selected_on = 'test', false)) AS on_test
            FROM ({LATEST}) r JOIN evals e ON e.run_id = r.run_id AND e.split = 'test'
            WHERE {where} AND r.recipe IN ('paper', 'reference') GROUP BY r.method, bb, r.recipe)
        SELECT coalesce(p.method, f.method), coalesce(p.bb, f.bb), p.overall, f.overall, f.overall - p.overall, p.few, f.few, f.few - p.few,
               coalesce(p.on_test, false) OR coalesce(f.on_test, false)
        FROM (SELECT * FROM cell WHERE recipe = 'paper') p
        FULL JOIN (SELECT * FROM cell WHERE recipe = 'reference') f ON p.method = f.method AND p.bb = f.bb
        """, params).fetchall()
    rows = _sort([list(r) for r in rows])
    notes = _mark_test_selected(rows)
    cols = ["Method", "Backbone", "Overall paper", "Overall ref.", "Δ overall", "Few paper", "Few ref.", "Δ few"]
    better = {"Overall paper": True, "Overall ref.": True, "Few paper": True, "Few ref.": True}
    return Table(f"Recipes: paper vs reference{_title(dataset, backbone)} (test, %)", cols, rows, better,
                 notes + ["Δ = reference - paper"])


def _title(dataset, backbone) -> str:
    parts = [p for p in (dataset, backbone) if p]
    return f" — {', '.join(parts)}" if parts else ""


BUILDERS = {"main": main_table, "backbones": backbones_table, "memory": memory_table, "cost": cost_table,
            "recipes": recipes_table}


def build(con, kind: str, **kwargs) -> Table:
    return BUILDERS[kind](con, **kwargs)


def best_per_column(table: Table) -> dict[str, float]:
    """The best value of every numeric column (highest, or lowest for costs)."""
    best = {}
    for j, col in enumerate(table.columns):
        if col not in table.higher_is_better:
            continue
        values = [r[j] for r in table.rows if isinstance(r[j], (int, float))]
        if values:
            best[col] = max(values) if table.higher_is_better[col] else min(values)
    return best
