"""The study's table layouts over the store (every figure comes from a stored record).

A table cell averages the runs of one result group only: the same dataset, method, backbone, weights
and every other setting that changes what a run computes, differing by their seed alone
(:func:`lvmbench.config.result_group`). Of several runs of one group and seed, the latest finished one
counts; the ``Seeds`` column counts the distinct seeds a cell averages, and every accuracy cell of
several seeds carries its sample standard deviation (shown as mean ± std). :func:`cells` is that
rule, in one place; each table only chooses the figures it shows of every cell.

A table never pools datasets: without ``--dataset`` its rows carry a ``Dataset`` column when the
store holds several. Runs of different recipes are never averaged together: a method under a recipe
other than ``paper`` is its own row, e.g. "lade (reference)". What else tells the rows of a table
apart goes into its ``Variant`` column (:mod:`.variants`), e.g. ``iters=30`` or ``γ=1 lr=0.01``. A row
whose weights were selected on the test split is marked with a dagger and the table says so in a note.

With ``published=True`` the main, backbone and cost tables follow each row that has a published
counterpart (:func:`lvmbench.published.counterpart`) with that row (``↳ published``) and the
difference (``↳ Δ``, yours − published), and name in a note the rows that have none.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import PurePath

from .. import published as pub
from ..catalog import CARBON_KG_PER_KWH, METHODS
from ..config import regrouped
from .spread import SIG3, spread
from ..weights import looks_like_path
from . import variants

KINDS = ("main", "backbones", "memory", "cost", "recipes")
TEST_SELECTED = "†"
TEST_SELECTED_NOTE = f"{TEST_SELECTED} selected on the test split, as the study's code does"
EVAL_FIELDS = ("overall", "many", "medium", "few", "precision", "recall", "f1")
RUN_FIELDS = ("run_id", "dataset", "backbone", "pretrained", "method", "recipe", "selected_on", "seed", "config",
              "ended_at", "s_per_iter", "wall_s", "avg_power_w", "energy_kwh", "peak_mem_mib", "device",
              "trainable_params", "loader_wait_s", "gpu_shared")
DEFAULT_WEIGHTS = ("openai", "embedded")


# Row kinds: a table's own rows, and (``published=True``) a published row and its difference below one.
OURS, PUBLISHED, DELTA = "ours", "published", "delta"
WIDE_ONLY = ["Precision", "Recall"]  # the main table's columns a narrow terminal leaves out (``--wide`` keeps them)
COST_WIDE_ONLY = ["Trainable", "Loader wait s/iter"]  # the cost table's (Table 8 publishes neither)
# column -> published field (the study publishes no loader wait: its published row leaves it blank)
COST_FIELDS = {"s/iter": "s_per_iter", "Loader wait s/iter": "loader_wait_s", "Device h": "gpu_hours",
               "Avg W": "avg_power_w", "kWh": "kwh", "kg CO2": "co2_kg"}


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list]
    higher_is_better: dict[str, bool]
    notes: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # per row: OURS, PUBLISHED or DELTA (empty: all OURS)
    wide_only: list[str] = field(default_factory=list)  # columns a narrow terminal may leave out
    digits: dict[str, str] = field(default_factory=dict)  # column → SIG3 (default: two decimals)


@dataclass
class Cell:
    """The runs one table cell averages: one result group, the latest finished run of each seed."""

    dataset: str
    method: str
    recipe: str | None
    backbone: str  # as tables name it: weights other than the default ones shown, e.g. "ViT-L-14 (laion2b…)"
    group: str
    runs: list[dict] = field(default_factory=list)
    variant: str = ""  # the settings that tell this row apart from the others of its table (.variants)

    @property
    def seeds(self) -> int:
        return len({r["seed"] for r in self.runs})

    @property
    def on_test(self) -> bool:
        """Some run of the cell selected its weights on the test split."""
        return any(r.get("selected_on") == "test" for r in self.runs)

    @property
    def label(self) -> str:
        """The method as a table names it: its recipe unless ``paper``, a dagger if selected on test."""
        name = self.method if self.recipe == "paper" else f"{self.method} ({self.recipe or 'no recipe'})"
        return name + (f" {TEST_SELECTED}" if self.on_test else "")

    @property
    def spec(self) -> dict:
        return self.runs[0]["spec"]

    def counterpart(self, kind: str = "accuracy") -> pub.Published | None:
        """The published row this cell compares with (``accuracy`` or ``cost``), if any."""
        run = self.runs[0]
        return pub.counterpart(kind, self.dataset, self.method, run["backbone"], run["pretrained"], self.recipe,
                               self.spec)

    def mean(self, key: str) -> float | None:
        values = [r[key] for r in self.runs if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    def stat(self, key: str):
        """The mean over seeds with its sample standard deviation (``spread.MeanStd``), or None."""
        values = [r[key] for r in self.runs if r.get(key) is not None]
        if not values:
            return None
        return spread(sum(values) / len(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


def backbone_label(backbone: str, pretrained: str | None) -> str:
    """A backbone as the tables name it: weights other than the default ones are shown (a file by its name)."""
    if not pretrained or pretrained in DEFAULT_WEIGHTS:
        return backbone
    return f"{backbone} ({PurePath(pretrained).name if looks_like_path(pretrained) else pretrained})"


def cells(con, dataset: str | None = None, backbone: str | None = None) -> list[Cell]:
    """Every table cell of the store's finished runs (optionally of one dataset and backbone)."""
    where, params = ["r.status = 'finished'"], []
    for column, value in (("dataset", dataset), ("backbone", backbone)):
        if value:
            where.append(f"r.{column} = ?")
            params.append(value)
    cols = [f"r.{c}" for c in RUN_FIELDS] + [f"e.{c}" for c in EVAL_FIELDS]
    rows = con.execute(f"""
        SELECT {', '.join(cols)} FROM runs r LEFT JOIN evals e ON e.run_id = r.run_id AND e.split = 'test'
        WHERE {' AND '.join(where)} ORDER BY r.ended_at, r.run_id""", params).fetchall()
    latest: dict[tuple, dict] = {}
    for values in rows:  # oldest first: the latest run of a (group, seed) wins
        run = dict(zip(RUN_FIELDS + EVAL_FIELDS, values))
        spec = regrouped(json.loads(run["config"]) if run["config"] else {})  # a store not ingested since
        run["spec"] = spec
        run["group"] = spec["result_group"]
        latest[(run["group"], run["seed"])] = run
    found: dict[str, Cell] = {}
    for run in latest.values():
        cell = found.setdefault(run["group"], Cell(run["dataset"], run["method"], run["recipe"],
                                                   backbone_label(run["backbone"], run["pretrained"]), run["group"]))
        cell.runs.append(run)
    return sorted(found.values(), key=lambda c: (
        c.dataset, _method_order(c.method), c.method, c.recipe != "paper", c.recipe or "",
        c.backbone))


def _method_order(name: str) -> int:
    """A method's row position: the order of the method registry, unknown names last."""
    order = list(METHODS)
    return order.index(name) if name in order else len(order)


def _shown(found: list[Cell]) -> tuple[list[Cell], list[str]]:
    """The cells a table shows, each with its variant (over all of them of its dataset: a table never pools
    datasets), and the notes that go with them."""
    notes = []
    for dataset in sorted({c.dataset for c in found}):
        same = [c for c in found if c.dataset == dataset]
        names, shared = variants.name([c.spec for c in same])
        for cell, variant in zip(same, names):
            cell.variant = variant
        several = len({c.dataset for c in found}) > 1
        notes += [f"{dataset}: {note}" if several else note for note in shared]
    return found, notes + _notes(found)


def _compare(found: list[Cell], rows: list[list], kind: str, columns: list[str],
             fields: dict[str, str]) -> tuple[list[list], list[str], list[str]]:
    """The rows with each cell's published row and difference (yours − published) below it
    (``fields``: column → published field), the row kinds, and notes on the sources and on the rows
    without a counterpart."""
    out, kinds, missing, cited = [], [], [], set()
    for cell, row in zip(found, rows):
        out.append(row)
        kinds.append(OURS)
        match = cell.counterpart(kind)
        if match is None:
            missing.append(" ".join(p for p in (cell.label, cell.variant, f"({cell.backbone})") if p))
            continue
        cited.add(f"{match.source}: {match.cite}")
        theirs = {c: match.values.get(f) for c, f in fields.items()}
        ours = dict(zip(columns, row))
        out.append(_below(row, columns, "↳ published", match.source, theirs))
        out.append(_below(row, columns, "↳ Δ", "", {c: _diff(ours.get(c), v) for c, v in theirs.items()}))
        kinds += [PUBLISHED, DELTA]
    notes = [f"↳ published {source}" for source in sorted(cited)] + (["↳ Δ: yours − published"] if cited else [])
    if missing:
        notes.append(f"no published counterpart: {'; '.join(missing)}")
    if any(c.dataset not in pub.datasets() for c in found):
        notes.append(f"published figures exist for {', '.join(pub.datasets())}")
    return out, kinds, notes


def _below(row: list, columns: list[str], label: str, source: str, values: dict) -> list:
    """A row under ``row``: its dataset and backbone, ``label`` as its method, ``source`` as its variant."""
    fixed = {"Method": label, "Variant": source}
    return [fixed[c] if c in fixed else v if c in ("Dataset", "Backbone") else values.get(c)
            for c, v in zip(columns, row)]


def _layout(found: list[Cell], dataset: str | None) -> tuple[list[str], callable]:
    """A ``Dataset`` column when the cells span several datasets (tables never pool them)."""
    several = dataset is None and len({c.dataset for c in found}) > 1
    return (["Dataset"] if several else []), (lambda c: [c.dataset] if several else [])


METRIC_COLUMNS = ["Overall", "Many", "Medium", "Few", "Precision", "Recall", "F1"]


def main_table(con, dataset=None, backbone=None, published: bool = False, ci: bool = False, resamples: int = 2000,
               **_) -> Table:
    """Methods × Overall / Many / Medium / Few / Precision / Recall / F1 (test split); with
    ``published``, each row's published counterpart and the difference below it; ``ci``: each accuracy cell
    with its 95 % bootstrap interval (:mod:`lvmbench.store.intervals`) from the stored per-class counts."""
    found, notes = _shown([c for c in cells(con, dataset, backbone) if c.mean("overall") is not None])
    lead, prefix = _layout(found, dataset)
    bounds = cell_intervals(con, found, resamples) if ci else {}
    rows = [prefix(c) + [c.label, c.variant, c.backbone, c.seeds]
            + [_with_ci(c.stat(k), bounds.get(c.group, {}).get(k)) for k in EVAL_FIELDS] for c in found]
    cols = lead + ["Method", "Variant", "Backbone", "Seeds", *METRIC_COLUMNS]
    kinds = []
    if published:
        rows, kinds, more = _compare(found, rows, "accuracy", cols, dict(zip(METRIC_COLUMNS, EVAL_FIELDS)))
        notes += more
    if ci:
        notes.append(f"[low, high]: 95 % bootstrap interval over test classes within each shot group, and over "
                     f"seeds for a cell of several ({resamples:,} draws, seeded)"
                     + ("; – : a run without per-class test counts" if len(bounds) < len(found) else ""))
    return Table(f"Main results{_title(dataset, backbone, found)} (test, %)", cols, rows,
                 {c: True for c in METRIC_COLUMNS}, notes, kinds, wide_only=WIDE_ONLY)


def _with_ci(value, ci):
    return value if value is None or ci is None else spread(float(value), value.std, value.n, ci)


def class_counts(con, found: list[Cell]) -> dict[str, "ClassCounts"]:
    """Each cell's per-class test counts (:class:`lvmbench.store.intervals.ClassCounts`) from the store, by result
    group; a cell with a run stored without them (made before lvmbench kept them) is left out."""
    from .intervals import ClassCounts

    ids = [r["run_id"] for c in found for r in c.runs]
    if not ids:
        return {}
    rows = con.execute("""
        SELECT run_id, list(n_train ORDER BY class_id), list(n_test ORDER BY class_id),
               list(n_correct ORDER BY class_id), bool_and(n_test IS NOT NULL AND n_correct IS NOT NULL)
        FROM per_class WHERE split = 'test' AND run_id IN (SELECT unnest(?)) GROUP BY run_id""", [ids]).fetchall()
    per_run = {run_id: list(zip(train, test, correct)) for run_id, train, test, correct, whole in rows if whole}
    out = {}
    for cell in found:
        runs = [per_run.get(r["run_id"]) for r in cell.runs]
        if runs and all(runs):
            out[cell.group] = ClassCounts.from_runs(runs)
    return out


def cell_intervals(con, found: list[Cell], resamples: int = 2000) -> dict[str, dict]:
    """Per result group: metric -> (low, high), the 95 % bootstrap interval."""
    from .intervals import intervals

    return {group: intervals(counts, resamples) for group, counts in class_counts(con, found).items()}


def _pivot(con, key: str, title: str, better: bool, dataset) -> Table:
    """Method × backbone of one figure: accuracies carry their spread over seeds, costs stay plain means."""
    found, notes = _shown([c for c in cells(con, dataset) if c.mean(key) is not None])
    lead, prefix = _layout(found, dataset)
    backbones = sorted({c.backbone for c in found})
    value = Cell.stat if key in EVAL_FIELDS else Cell.mean
    values = {(tuple(prefix(c)), c.label, c.variant, c.backbone): value(c, key) for c in found}
    rows, seen = [], set()
    for c in found:
        row_key = (tuple(prefix(c)), c.label, c.variant)
        if row_key not in seen:
            seen.add(row_key)
            rows.append(prefix(c) + [c.label, c.variant] + [values.get((*row_key, bb)) for bb in backbones])
    return Table(title + _title(dataset, None, found), lead + ["Method", "Variant", *backbones], rows,
                 {bb: better for bb in backbones}, notes)


def backbones_table(con, dataset=None, **_) -> Table:
    """Method × backbone overall accuracy (the study's Tables 4–6)."""
    return _pivot(con, "overall", "Overall accuracy by backbone", True, dataset)


def memory_table(con, dataset=None, **_) -> Table:
    """Peak memory (MiB) by method and backbone (the study's Table 7)."""
    return _pivot(con, "peak_mem_mib", "Peak memory (MiB) by backbone", False, dataset)


def cost_table(con, dataset=None, backbone=None, carbon_kg_per_kwh: float = CARBON_KG_PER_KWH,
               published: bool = False, **_) -> Table:
    """Trainable parameters, s/iter, loader wait, device hours, average W, kWh, kg CO2 per method (the
    study's Table 8, with what each method tunes: a decoder, a stage-2 adjuster or modules inside the
    tower). ``Loader wait`` is the seconds per step a step waited for its images (a loader that bounds
    training waits a large part of s/iter; blank without a loader, and never published). Energy and
    power are measured on GPUs only: a CPU run leaves them blank. With ``published``,
    Table 8's figures for the row's kind of method and backbone, and the difference, below it."""
    found, notes = _shown(cells(con, dataset, backbone))
    lead, prefix = _layout(found, dataset)
    rows = []
    for c in found:
        kwh = c.mean("energy_kwh")
        rows.append(prefix(c) + [c.label, c.variant, c.backbone, c.seeds, trainable(c), c.mean("s_per_iter"),
                                 c.mean("loader_wait_s"), device_hours(c), c.mean("avg_power_w"), kwh,
                                 kwh * carbon_kg_per_kwh if kwh is not None else None])
    cols = lead + ["Method", "Variant", "Backbone", "Seeds", "Trainable", *COST_FIELDS]
    kinds = []
    if published:
        rows, kinds, more = _compare(found, rows, "cost", cols, COST_FIELDS)
        notes += more
    return Table(f"Cost{_title(dataset, backbone, found)} ({carbon_kg_per_kwh} kg CO2/kWh)", cols, rows,
                 {c: False for c in ["Trainable", *COST_FIELDS]}, notes + _shared_gpu_note(found), kinds,
                 wide_only=COST_WIDE_ONLY, digits=dict.fromkeys(COST_FIELDS, SIG3))


def _shared_gpu_note(found: list[Cell]) -> list[str]:
    """Power and energy are NVML's figures for a whole GPU: name the cells whose GPU ran other processes too."""
    shared = sorted({f"{c.label} ({c.backbone})" for c in found if any(r.get("gpu_shared") for r in c.runs)})
    if not shared:
        return []
    return [f"Avg W, kWh and kg CO2 are device-wide for {', '.join(shared)}: their GPU also ran other processes, "
            "whose power is included (memory figures are per process)"]


def device_hours(cell: Cell) -> float | None:
    """The cell's mean wall time over seeds, in hours (the ``Device h`` of the cost table)."""
    seconds = cell.mean("wall_s")
    return None if seconds is None else seconds / 3600.0


def trainable(cell: Cell) -> int | None:
    """The cell's trainable parameters (the same for every seed of a cell)."""
    count = cell.mean("trainable_params")
    return None if count is None else round(count)


@dataclass(frozen=True)
class CostPoint:
    """One table cell as a point of few-shot accuracy against cost; a missing figure is None."""

    label: str  # the method as the tables name it (``Cell.label``) and its variant
    backbone: str
    few: float | None  # test few-shot accuracy (%), mean over seeds, as the main table's ``Few``
    hours: float | None  # as the cost table's ``Device h``
    params: int | None  # as the cost table's ``Trainable``


def cost_points(con, dataset: str, backbone: str | None = None) -> list[CostPoint]:
    """Few-shot accuracy against device hours and trainable parameters, one point per table cell of one
    dataset: the main and cost tables' figures, side by side as the study's Table 7 and LIFT's Figure 1
    (Shi et al., ICML 2024) argue from them."""
    found, _ = _shown(cells(con, dataset, backbone))
    return [CostPoint(" ".join(p for p in (c.label, c.variant) if p), c.backbone, c.mean("few"), device_hours(c),
                      trainable(c)) for c in found]


def recipes_table(con, dataset=None, backbone=None, **_) -> Table:
    """Per method: test overall and few-shot accuracy under ``paper`` and ``reference`` and their
    difference (reference - paper): what the study's quirks cost each method. ``reference`` also changes
    the preprocessing (``data.transform``), so the difference is split when the store holds a reference
    run with the paper's preprocessing (``--set recipe=reference data.transform=study``): Δ method =
    that run - paper, Δ preproc. = reference - that run."""
    from ..config import defaults

    found, notes = _shown([c for c in cells(con, dataset, backbone) if c.recipe in ("paper", "reference")
                           and c.mean("overall") is not None])
    lead, prefix = _layout(found, dataset)
    groups: dict[tuple, dict[str, list[Cell]]] = {}
    for c in found:
        key = (tuple(prefix(c)), c.method, _without_transform(c.variant), c.backbone)
        groups.setdefault(key, {}).setdefault(c.recipe, []).append(c)
    rows = []
    for (key, method, variant, bb), by_recipe in groups.items():
        p = (by_recipe.get("paper") or [None])[0]
        refs = by_recipe.get("reference", [])
        own = defaults(refs[0].dataset, method, "reference")["data.transform"] if refs else None
        f = next((c for c in refs if _transform(c) == own), None)
        same = next((c for c in refs if p is not None and _transform(c) == _transform(p)), None)
        on_test = any(c.on_test for c in [p, *refs] if c)
        row = list(key) + [method + (f" {TEST_SELECTED}" if on_test else ""), variant, bb]
        for k in ("overall", "few"):
            v_p, v_f, v_same = (c.mean(k) if c else None for c in (p, f, same))
            row += [v_p, v_f, _diff(v_f, v_p), _diff(v_same, v_p), _diff(v_f, v_same)]
        rows.append(row)
    cols = lead + ["Method", "Variant", "Backbone", "Overall paper", "Overall ref.", "Δ overall", "Δ method",
                   "Δ preproc.", "Few paper", "Few ref.", "Δ few", "Δ few method", "Δ few preproc."]
    better = {"Overall paper": True, "Overall ref.": True, "Few paper": True, "Few ref.": True}
    return Table(f"Recipes: paper vs reference{_title(dataset, backbone, found)} (test, %)", cols, rows, better,
                 notes + ["Δ = reference - paper = Δ method + Δ preproc.; Δ method: a reference run with the "
                          "paper's preprocessing (--set recipe=reference data.transform=...) - paper"])


def _transform(cell: Cell) -> str | None:
    return cell.spec.get("data.transform")


def _without_transform(variant: str) -> str:
    """A row's variant without its preprocessing (``transform=…``): how the recipes table pairs its runs."""
    return " ".join(p for p in variant.split(" ") if p and not p.startswith(("transform=", "data.transform=")))


def _diff(a, b):
    return float(a) - float(b) if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None


def _notes(found: list[Cell]) -> list[str]:
    return [TEST_SELECTED_NOTE] if any(c.on_test for c in found) else []


def _title(dataset, backbone, found: list[Cell] = ()) -> str:
    datasets = {c.dataset for c in found}
    dataset = dataset or (datasets.pop() if len(datasets) == 1 else None)  # one dataset: named in the title
    parts = [p for p in (dataset, backbone) if p]
    return f" — {', '.join(parts)}" if parts else ""


BUILDERS = {"main": main_table, "backbones": backbones_table, "memory": memory_table, "cost": cost_table,
            "recipes": recipes_table}


def build(con, kind: str, **kwargs) -> Table:
    return BUILDERS[kind](con, **kwargs)


def ranked(table: Table) -> list[bool]:
    """Per row, whether it is one of the table's own rows: only those may be marked best (a published
    row or a difference never is)."""
    return [not table.kinds or table.kinds[i] == OURS for i in range(len(table.rows))]


def best_per_column(table: Table) -> dict[str, float]:
    """The best value of every numeric column (highest, or lowest for costs) among the table's own rows."""
    best = {}
    own = [r for r, mine in zip(table.rows, ranked(table)) if mine]
    for j, col in enumerate(table.columns):
        if col not in table.higher_is_better:
            continue
        values = [r[j] for r in own if isinstance(r[j], (int, float))]
        if values:
            best[col] = max(values) if table.higher_is_better[col] else min(values)
    return best
