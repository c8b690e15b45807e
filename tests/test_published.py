"""The published numbers beside yours (``table --published``), the Variant column, tables that fit 80
columns, and costs to three significant digits."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from rich.console import Console

from lvmbench import config, published
from lvmbench.render import SIG3, fmt, print_table
from lvmbench.store import open_readonly, open_writer, tables
from lvmbench.store.ingest import ingest_dir
from .conftest import finish

# Cells of the sources, as printed there (Wang et al. 2023, arXiv:2304.01457v2; LIFT: Shi et al. 2024).
# (kind, dataset, method, backbone, weights, settings, field): value
SOURCE_CELLS = [
    (("accuracy", "imagenet-lt", "ce", "ViT-L-14", "openai", {}, "overall"), 75.05),  # Table 1, Softmax
    (("accuracy", "imagenet-lt", "lade", "ViT-L-14", "openai", {}, "few"), 72.22),  # Table 1, LADE Loss
    (("accuracy", "imagenet-lt", "coop", "ViT-L-14", "openai", {}, "f1"), 59.00),  # Table 1, CoOp
    (("accuracy", "inat18", "crt", "ViT-L-14", "openai", {}, "precision"), 76.87),  # Table 2, CRT
    (("accuracy", "inat18", "zeroshot", "ViT-L-14", "openai", {}, "overall"), 5.45),  # Table 2, Zero-shot CLIP
    (("accuracy", "places-lt", "ldam", "ViT-L-14", "openai", {}, "few"), 22.7),  # Table 3, LDAM Loss
    (("accuracy", "places-lt", "marc", "ViT-L-14", "openai", {}, "f1"), 48.15),  # Table 3, MARC
    (("accuracy", "places-lt", "disalign", "ViT-B-16", "openai", {}, "overall"), 46.78),  # Table 4, Two-stage ViT-B16
    (("accuracy", "inat18", "ce", "ViT-B-16", "openai", {}, "overall"), 51.35),  # Table 4, One-stage ViT-B16
    (("accuracy", "inat18", "zeroshot", "ViT-L-14", "laion2b_s32b_b82k", {}, "recall"), 3.81),  # Table 5, Laion-CLIP
    (("accuracy", "places-lt", "marc", "ViT-L-14", "laion2b_s32b_b82k", {}, "many"), 46.74),  # Table 5
    (("accuracy", "imagenet-lt", "linear_probe", "RN101", "openai", {}, "medium"), 0.00),  # Table 6
    (("accuracy", "inat18", "full_finetune", "RN101", "openai", {"loss": "balanced_softmax"}, "f1"), 47.19),  # Table 6
    (("accuracy", "places-lt", "crt", "RN101", "openai", {}, "few"), 15.69),  # Table 6, Decoder+CRT
    (("cost", "imagenet-lt", "focal", "ViT-L-14", "openai", {}, "avg_power_w"), 793.25),  # Table 8, one-stage
    (("cost", "imagenet-lt", "lws", "ViT-B-16", "openai", {}, "gpu_hours"), 0.61),  # Table 8, two-stage
    (("cost", "imagenet-lt", "coop", "ViT-B-16", "openai", {"coop.shots": 1, "coop.n_ctx": 16}, "co2_kg"), 0.16),
    (("accuracy", "imagenet-lt", "lift", "ViT-B-16", "openai", {"eval.tte": True}, "overall"), 78.3),  # LIFT
    (("accuracy", "places-lt", "lift", "ViT-B-16", "openai", {"eval.tte": True}, "overall"), 52.2),  # LIFT
]


@pytest.mark.parametrize("cell,value", SOURCE_CELLS,
                         ids=[f"{c[0][1]}-{c[0][2]}-{c[0][3]}-{c[0][6]}" for c in SOURCE_CELLS])
def test_published_cells_equal_the_sources(cell, value):
    kind, dataset, method, backbone, weights, settings, field = cell
    spec = {"loss": config.defaults(dataset, method)["loss"], "coop.shots": 0, "coop.n_ctx": 4, **settings}
    match = published.counterpart(kind, dataset, method, backbone, weights, "paper", spec)
    assert match is not None and match.values[field] == value


def test_what_has_no_published_counterpart_gets_none():
    spec = {"loss": "ce", "coop.shots": 0}
    assert published.counterpart("accuracy", "mnist-lt", "ce", "tiny-clip", "embedded", "paper", spec) is None
    # the study's numbers are recipe=paper's; Table 6's fine-tuned tower + CRT has no lvmbench method
    assert published.counterpart("accuracy", "imagenet-lt", "ce", "ViT-L-14", "openai", "reference", spec) is None
    assert published.counterpart("accuracy", "imagenet-lt", "coop", "ViT-L-14", "openai", "paper", spec).values == {
        "overall": 60.3, "f1": 59.0}  # CoOp's '-' cells are not numbers
    # LIFT's figures are with test-time ensembling (its clip_vit_b16_peft.yaml): a run without it is not comparable
    lift = {"loss": "logit_adjust", "eval.tte": False}
    assert published.counterpart("accuracy", "imagenet-lt", "lift", "ViT-B-16", "openai", "paper", lift) is None


def test_published_tables_fit_80_columns_when_piped(grid):
    """ViT-B-16 on ImageNet-LT: ce against Table 4 (the study's Table 1 is ViT-L-14), lift against LIFT's."""
    from lvmbench import cli

    runs = grid.parent / "runs"
    for method in ("ce", "focal"):
        finished(runs, "imagenet-lt", method, overall=70.0, backbone="ViT-B-16", pretrained="openai",
                 tmp=grid.parent)
    with open_writer(grid) as con:
        ingest_dir(con, runs)
    for kind in ("main", "cost"):
        out = subprocess.run([sys.executable, "-m", "lvmbench", "table", kind, "--dataset", "imagenet-lt",
                              "--backbone", "ViT-B-16", "--published", "--results", str(grid)], capture_output=True,
                             text=True, env={**os.environ, "COLUMNS": "80"}, timeout=600)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert max(len(line) for line in lines[:lines.index("↳ Δ: yours − published")]) <= 80, out.stdout
    table = build(grid, dataset="imagenet-lt", backbone="ViT-B-16", published=True)
    published_rows = [r for r in table.rows if r[0] == "↳ published"]
    assert [(r[1], r[table.columns.index("Overall")]) for r in published_rows] == [("Shi 2024 T1", 78.3),
                                                                                   ("Wang 2023 T4", 68.14)]
    assert any("no published counterpart: focal tte=off (ViT-B-16)" in n for n in table.notes)


def finished(runs, dataset, method, *sets, overall=50.0, seed=0, backbone="tiny-clip", pretrained=None, tmp=None,
             **status):
    spec = config.resolve(dataset, backbone, method, seed=seed, pretrained=pretrained,
                          data_root=None if dataset == "mnist-lt" else str(tmp),
                          overrides=config.parse_sets(list(sets)))
    return finish(runs, spec, overall, **status)


@pytest.fixture
def grid(tmp_path):
    """A mixed-budget grid on mnist-lt (as a user makes one by hand) and two ImageNet-LT runs."""
    runs = tmp_path / "runs"
    finished(runs, "mnist-lt", "focal", "train.iters=30", overall=80.0)
    finished(runs, "mnist-lt", "focal", "train.iters=30", "loss.gamma=1", overall=81.0)
    finished(runs, "mnist-lt", "crt", "train.iters=10", overall=82.0)
    finished(runs, "mnist-lt", "balanced_softmax", overall=83.0)
    finished(runs, "mnist-lt", "balanced_softmax", overall=84.0, seed=1)
    finished(runs, "imagenet-lt", "ce", overall=74.0, backbone="ViT-L-14", pretrained="openai", tmp=tmp_path,
           avg_power_w=700.0, energy_kwh=1.5)
    finished(runs, "imagenet-lt", "lift", "eval.tte=true", overall=77.0, backbone="ViT-B-16", pretrained="openai",
             tmp=tmp_path)
    db = tmp_path / "r.duckdb"
    with open_writer(db) as con:
        ingest_dir(con, runs)
    return db


def build(db, kind="main", **kw):
    with open_readonly(db) as con:
        return tables.build(con, kind, **kw)


def printed(db, kind="main", width=80, **kw) -> str:
    buf = io.StringIO()
    print_table(db, kind, console=Console(file=buf, width=width, color_system=None), **kw)
    return buf.getvalue()


def test_the_variant_column_names_every_budget_across_methods(grid):
    table = build(grid, dataset="mnist-lt")
    assert table.columns[:4] == ["Method", "Variant", "Backbone", "Seeds"]
    assert sorted((r[0], r[1]) for r in table.rows) == [
        ("balanced_softmax", "iters=300"), ("crt", "iters=10"), ("focal", "γ=1 iters=30"), ("focal", "γ=2 iters=30")]
    for kind in ("csv", "latex", "table", "markdown"):
        out = printed(grid, fmt_name=kind, dataset="mnist-lt")
        assert "iters=300" in out and "None" not in out and "null" not in out, kind
    rows = json.loads(printed(grid, fmt_name="json", dataset="mnist-lt"))
    assert sorted(r["Variant"] for r in rows) == ["iters=10", "iters=300", "γ=1 iters=30", "γ=2 iters=30"]


def test_the_variant_never_repeats_what_the_method_says(tmp_path):
    """A chosen loss is named on its row only: not ``loss=ce`` on ce, nor ``loss=logit_adjust`` on lift."""
    runs, db = tmp_path / "runs", tmp_path / "r.duckdb"
    for method, *sets in (("ce",), ("focal",), ("lift",), ("full_finetune", "loss=balanced_softmax")):
        finished(runs, "mnist-lt", method, *sets)
    with open_writer(db) as con:
        ingest_dir(con, runs)
    assert {r[0]: r[1] for r in build(db).rows} == {"ce": "", "focal": "", "lift": "",
                                                     "full_finetune": "loss=balanced_softmax"}


def test_settings_every_row_shares_are_said_once():
    from lvmbench.store import variants

    specs = [config.resolve("mnist-lt", "tiny-clip", m, overrides={"train.iters": 30}) for m in ("ce", "focal")]
    assert variants.name(specs) == (["", ""], ["all rows: iters=30"])


def test_table_main_fits_80_columns_and_keeps_the_study_columns(grid):
    out = printed(grid, dataset="mnist-lt")
    assert max(len(line) for line in out.splitlines()) <= 80
    header = next(line for line in out.splitlines() if line.startswith("Method"))
    assert header.split() == ["Method", "Variant", "Seeds", "Overall", "Many", "Medium", "Few", "F1"]
    assert "focal             γ=1 iters=30      1    81.00" in out  # one line per row, never fragments
    wide = printed(grid, dataset="mnist-lt", wide=True)
    assert "Precision" in wide and "Recall" in wide
    assert "Precision" in printed(grid, dataset="mnist-lt", width=200)


def test_published_rows_follow_each_row_with_the_difference(grid):
    table = build(grid, dataset="imagenet-lt", published=True)
    rows = {(r[0], r[2]): r for r in table.rows}
    ours, theirs, delta = rows["ce", "ViT-L-14"], rows["↳ published", "ViT-L-14"], rows["↳ Δ", "ViT-L-14"]
    col = table.columns.index
    assert theirs[col("Variant")] == "Wang 2023 T1" and theirs[col("Overall")] == 75.05
    assert delta[col("Overall")] == pytest.approx(74.0 - 75.05) and delta[col("Few")] == pytest.approx(60.0 - 49.10)
    assert rows["↳ published", "ViT-B-16"][col("Overall")] == 78.3  # LIFT's, with its source
    assert tables.best_per_column(table)["Overall"] == 77.0  # published rows are not yours to be best
    assert build(grid, dataset="imagenet-lt").kinds == []
    none = printed(grid, dataset="mnist-lt", published=True)
    assert "no published counterpart" in none and "crt iters=10 (tiny-clip)" in none


def test_a_published_row_equal_to_your_best_is_not_marked(tmp_path):
    runs, db = tmp_path / "runs", tmp_path / "r.duckdb"
    finished(runs, "imagenet-lt", "ce", overall=75.05, backbone="ViT-L-14", pretrained="openai", tmp=tmp_path)
    with open_writer(db) as con:
        ingest_dir(con, runs)
    out = printed(db, fmt_name="latex", published=True)
    assert r"↳ published & Wang 2023 T1 & ViT-L-14 & -- & 75.05 &" in out  # Table 1's Softmax: as high, not yours
    assert out.count(r"\textbf{75.05}") == 1
    colored = io.StringIO()
    print_table(db, "main", published=True, console=Console(file=colored, width=200, force_terminal=True))
    lines = colored.getvalue().splitlines()
    assert "\x1b[1;32m" in next(line for line in lines if line.startswith("ce "))
    assert "\x1b[1;32m" not in "".join(line for line in lines if line.startswith("↳"))


def test_the_cost_table_compares_with_table_8_to_three_significant_digits(grid):
    out = printed(grid, "cost", dataset="imagenet-lt", published=True, width=200)
    assert "Wang 2023 T8" in out and "arXiv:2304.01457v2" in out and "0.00825" in out and "793" in out
    assert "no published counterpart" in out and "lift tte=on (ViT-B-16)" in out  # Table 8 has no LIFT row
    assert (fmt(0.008251, SIG3), fmt(0.02, SIG3), fmt(744.0, SIG3), fmt(12.345, SIG3)) == (
        "0.00825", "0.0200", "744", "12.3")
    assert fmt(0.004) == "0.00"  # accuracies: two decimals in every row


def test_published_applies_to_main_and_cost_only(grid, capsys):
    from lvmbench import cli

    assert cli.main(["table", "memory", "--published", "--results", str(grid)]) == 2
    assert "--published" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["paper-table1", "paper-table2", "paper-table3", "paper-backbones", "paper-laion",
                                  "paper-resnet"])
def test_the_paper_presets_run_what_the_tables_publish(name):
    """The study's grids and its tables describe the same experiments (Table 1 is ImageNet-LT, Table 2
    iNaturalist 2018, Table 3 Places-LT; Table 5 has no ImageNet-LT). Tables 1-3 print every method
    but three the study's code has, and CoOp on iNaturalist 2018, which it could not run (Sec. 5.2);
    Tables 4-6 print some methods of each dataset, backbone and weights the preset runs."""
    from lvmbench.exec.presets import PRESETS

    p = PRESETS[name]
    for d, b, w in [(d, b, w) for d in p.datasets for b in p.backbones for w in p.pretrained]:
        missing = {m for m in p.methods
                   if published.counterpart("accuracy", d, m, b, w or "openai", "paper", config.defaults(d, m)) is None}
        if name in ("paper-table1", "paper-table2", "paper-table3"):
            assert missing <= {"cbs", "grw", "logit_adjust"} | ({"coop"} if d == "inat18" else set()), (d, b, w)
        else:
            assert missing != set(p.methods), (d, b, w)
