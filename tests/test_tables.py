"""Table cells average the runs of one result group only (same config but the seed), never datasets."""
from __future__ import annotations

import contextlib
import io
import json

import pytest

from lvmbench import config
from lvmbench.runs import scheduler
from lvmbench.store import open_readonly, open_writer, tables
from lvmbench.store.ingest import ingest_dir


def finished(runs, dataset="mnist-lt", method="ce", seed=0, overall=50.0, ended=0, sets=(), data_root=None,
             few=1.0, backbone="tiny-clip", pretrained=None, **status):
    spec = config.resolve(dataset, backbone, method, seed=seed, data_root=data_root, pretrained=pretrained,
                          overrides=config.parse_sets(list(sets)))
    run = scheduler.prepare(spec, runs)
    run.write_status(**{"status": "finished", "started_at": 1_700_000_000, "ended_at": 1_700_000_100 + ended,
                        "stage": 1, "wall_s": 60.0, "s_per_iter": 0.2, "peak_mem_mib": 900.0, "device": "cpu",
                        **status})
    (run.eval_dir / "test.json").write_text(json.dumps(
        {"split": "test", "overall": overall, "many": 1.0, "medium": 1.0, "few": few, "precision": 1.0,
         "recall": 1.0, "f1": 1.0, "worst_class": 1.0, "n_samples": 10}))
    return run


def build(tmp_path, kind="main", **kw):
    with open_writer(tmp_path / "r.duckdb") as con:
        ingest_dir(con, tmp_path / "runs")
    with open_readonly(tmp_path / "r.duckdb") as con:
        return tables.build(con, kind, **kw)


def test_without_dataset_rows_are_per_dataset_and_seeds_count_seeds(tmp_path):
    runs = tmp_path / "runs"
    finished(runs, "mnist-lt", overall=80.0)
    finished(runs, "folder", overall=40.0, data_root=str(tmp_path))
    table = build(tmp_path)
    assert table.columns[:5] == ["Dataset", "Method", "Variant", "Backbone", "Seeds"]
    assert sorted((r[0], r[4], r[5]) for r in table.rows) == [("folder", 1, 40.0), ("mnist-lt", 1, 80.0)]
    assert table.title == "Main results (test, %)"  # several datasets: none named
    for kind in ("backbones", "memory", "cost"):
        assert {r[0] for r in build(tmp_path, kind).rows} == {"folder", "mnist-lt"}
    assert "Device h" in build(tmp_path, "cost").columns


def test_a_cell_averages_seeds_of_one_config_only(tmp_path):
    runs = tmp_path / "runs"
    root = str(tmp_path)
    finished(runs, "folder", seed=0, overall=40.0, data_root=root)
    finished(runs, "folder", seed=1, overall=44.0, data_root=root)
    finished(runs, "folder", seed=0, overall=10.0, data_root=root, ended=5, sets=["data.subsample_lt=true"])
    finished(runs, "folder", seed=1, overall=20.0, data_root=root, ended=6, sets=["data.subsample_lt=true"])
    finished(runs, "folder", seed=1, overall=50.0, data_root=root, ended=9, sets=["data.subsample_lt=true"])  # rerun
    table = build(tmp_path, dataset="folder")
    got = sorted((r[0], r[1], r[3], r[4]) for r in table.rows)
    # the latest run of seed 1 replaces the earlier one: (10 + 50) / 2, where all three would give 26.7
    assert got == [("ce", "subsample_lt=off", 2, pytest.approx(42.0)),
                   ("ce", "subsample_lt=on", 2, pytest.approx(30.0))]
    std = {r[1]: r[4].std for r in table.rows}
    assert std["subsample_lt=on"] == pytest.approx(28.2842712, abs=1e-6)  # stdev(10, 50)


def test_cost_points_are_the_few_shot_and_cost_figures_of_each_cell_of_one_dataset(tmp_path):
    runs = tmp_path / "runs"

    def run(method, seed, few, wall_s, params, dataset="mnist-lt"):
        r = finished(runs, dataset, method=method, seed=seed, data_root=None if dataset == "mnist-lt" else str(tmp_path))
        r.write_status(wall_s=wall_s, trainable_params=params)
        test = json.loads((r.eval_dir / "test.json").read_text())
        (r.eval_dir / "test.json").write_text(json.dumps({**test, "few": few}))

    run("ce", 0, few=30.0, wall_s=360.0, params=1000)
    run("ce", 1, few=40.0, wall_s=1080.0, params=1000)
    run("zeroshot", 0, few=10.0, wall_s=36.0, params=0)
    run("ce", 0, few=99.0, wall_s=7200.0, params=5, dataset="folder")  # another dataset: never pooled
    with open_writer(tmp_path / "r.duckdb") as con:
        ingest_dir(con, runs)
    with open_readonly(tmp_path / "r.duckdb") as con:
        found = tables.cost_points(con, "mnist-lt")
    assert sorted(p.label for p in found) == ["ce", "zeroshot"]  # one point per cell: the other dataset's ce is no point
    points = {p.label: p for p in found}
    # by hand: ce averages its two seeds, (30+40)/2 few-shot and (360+1080)/2 s = 0.2 h
    assert (points["ce"].few, points["ce"].hours, points["ce"].params) == (35.0, pytest.approx(0.2), 1000)
    assert (points["zeroshot"].few, points["zeroshot"].hours, points["zeroshot"].params) == (
        10.0, pytest.approx(0.01), 0)
    assert points["ce"].backbone == "tiny-clip"
    with open_readonly(tmp_path / "r.duckdb") as con:
        assert tables.cost_points(con, "mnist-lt", backbone="ViT-B-16") == []  # only the backbone asked for
        assert len(tables.cost_points(con, "mnist-lt", backbone="tiny-clip")) == 2


def printed(db, kind, width: int) -> str:
    """The table as ``lvmbench table KIND`` prints it on a terminal ``width`` columns wide."""
    from rich.console import Console

    from lvmbench.render import print_table

    out = io.StringIO()
    print_table(db, kind, console=Console(file=out, width=width, color_system=None))
    return out.getvalue()


def table_json(db, kind, *args):
    """``lvmbench table KIND ... --format json`` as a user runs it: its rows as dicts."""
    from lvmbench import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["table", kind, "--results", str(db), "--format", "json", *args]) == 0
    return json.loads(out.getvalue())


@pytest.mark.parametrize("kind", tables.KINDS)
def test_dataset_option_shows_only_that_datasets_runs(tmp_path, kind):
    runs = tmp_path / "runs"
    for recipe in ("paper", "reference"):
        finished(runs, "mnist-lt", overall=80.0, sets=[f"recipe={recipe}"], wall_s=10.0, peak_mem_mib=100.0)
        finished(runs, "folder", method="focal", overall=40.0, data_root=str(tmp_path), sets=[f"recipe={recipe}"],
                 wall_s=99.0, peak_mem_mib=999.0)  # another method: a row of its own, never hidden behind ce's
    build(tmp_path)
    everything = table_json(tmp_path / "r.duckdb", kind)
    assert {r["Dataset"] for r in everything} == {"folder", "mnist-lt"}
    rows = table_json(tmp_path / "r.duckdb", kind, "--dataset", "mnist-lt")
    assert rows and all("Dataset" not in r for r in rows)
    numbers = {v for r in rows for v in r.values() if isinstance(v, (int, float))}
    assert not numbers & {40.0, 99.0 / 3600, 999.0}, rows  # none of the folder run's figures
    assert numbers & {80.0, 10.0 / 3600, 100.0}
    assert not any("focal" in str(v) for r in rows for v in r.values())


def test_the_best_cost_is_the_lowest_and_the_best_accuracy_the_highest(tmp_path):
    runs = tmp_path / "runs"
    finished(runs, method="ce", overall=70.0, wall_s=3600.0, s_per_iter=0.5, peak_mem_mib=2000.0,
             trainable_params=5000)
    finished(runs, method="focal", overall=60.0, wall_s=360.0, s_per_iter=0.05, peak_mem_mib=500.0,
             trainable_params=100)
    cost = tables.best_per_column(build(tmp_path, "cost"))
    assert (cost["s/iter"], cost["Device h"], cost["Trainable"]) == (0.05, pytest.approx(0.1), 100)
    assert tables.best_per_column(build(tmp_path, "memory"))["tiny-clip"] == 500.0
    backbones = build(tmp_path, "backbones")
    assert backbones.title == "Overall accuracy by backbone — mnist-lt"
    assert tables.best_per_column(backbones)["tiny-clip"] == 70.0
    assert tables.best_per_column(build(tmp_path, "main"))["Overall"] == 70.0


def test_the_recipes_table_marks_a_method_selected_on_test(tmp_path):
    runs = tmp_path / "runs"
    finished(runs, method="ce", overall=50.0, few=5.0, sets=["recipe=paper"], selected_on="test")
    finished(runs, method="ce", overall=55.0, few=7.0, sets=["recipe=reference"], selected_on="val")
    finished(runs, method="focal", overall=40.0, few=3.0, sets=["recipe=paper"], selected_on="val")
    finished(runs, method="focal", overall=45.0, few=2.0, sets=["recipe=reference"], selected_on="val")
    table = build(tmp_path, "recipes")
    assert table.columns[:6] == ["Method", "Variant", "Backbone", "Overall paper", "Overall ref.", "Δ overall"]
    assert table.title == "Recipes: paper vs reference — mnist-lt (test, %)"
    assert table.notes[0] == tables.TEST_SELECTED_NOTE and table.notes[-1].startswith("Δ = reference - paper")
    assert tables.best_per_column(table) == {"Overall paper": 50.0, "Overall ref.": 55.0, "Few paper": 5.0,
                                             "Few ref.": 7.0}  # accuracies: the highest is best
    labels = [r[0] for r in table.rows]
    assert sorted(labels) == [f"ce {tables.TEST_SELECTED}", "focal"]
    ce = dict(zip(table.columns, next(r for r in table.rows if r[0].startswith("ce"))))
    assert {k: ce[k] for k in ("Backbone", "Overall paper", "Overall ref.", "Δ overall", "Few paper", "Few ref.",
                               "Δ few")} == {"Backbone": "tiny-clip", "Overall paper": 50.0, "Overall ref.": 55.0,
                                             "Δ overall": 5.0, "Few paper": 5.0, "Few ref.": 7.0, "Δ few": 2.0}
    assert build(tmp_path, "recipes", backbone="ViT-B-16").rows == []  # --backbone: only its runs


def test_a_run_made_before_recipes_is_labelled_as_having_none(tmp_path):
    """Runs stored before recipes existed have no ``recipe`` in their spec: neither paper nor reference."""
    runs = tmp_path / "runs"
    old = finished(runs, method="ce", overall=50.0, selected_on="test")
    spec = {k: v for k, v in old.spec().items() if k not in ("recipe", "result_group", "config_hash")}
    old.spec_file.write_text(json.dumps(spec))
    finished(runs, method="ce", overall=60.0, sets=["recipe=paper"])
    main = build(tmp_path)
    overall = main.columns.index("Overall")
    assert [(r[0], r[overall]) for r in main.rows] == [("ce", 60.0),  # the paper row first
                                                       (f"ce (no recipe) {tables.TEST_SELECTED}", 50.0)]
    recipes = build(tmp_path, "recipes")
    assert [dict(zip(recipes.columns, r))["Overall ref."] for r in recipes.rows] == [None]  # neither recipe
    assert [(r[0], dict(zip(recipes.columns, r))["Overall paper"]) for r in recipes.rows] == [("ce", 60.0)]
    assert tables.TEST_SELECTED_NOTE not in recipes.notes  # the old run (selected on test) is in no row of it


def test_the_cost_table_shows_each_cells_mean_loader_wait_per_step(tmp_path):
    runs = tmp_path / "runs"
    for seed, wait in ((0, 0.02), (1, 0.04)):
        finished(runs, seed=seed).write_status(loader_wait_s=wait)
    finished(runs, method="focal")  # no loader wait recorded (e.g. cached training views): blank
    with open_writer(tmp_path / "r.duckdb") as con:
        ingest_dir(con, runs)
        assert sorted(con.execute("SELECT loader_wait_s FROM runs").fetchall(), key=str) == \
            [(0.02,), (0.04,), (None,)]
    table = build(tmp_path, "cost")
    column = table.columns.index("Loader wait s/iter")
    assert table.columns[column - 1] == "s/iter"
    assert {r[0]: r[column] for r in table.rows} == {"ce": pytest.approx(0.03), "focal": None}


def test_the_recipes_table_splits_the_difference_into_method_and_preprocessing(tmp_path):
    """Δ method = a reference run with the paper's preprocessing - paper; Δ preproc. = reference - that run;
    without such a run both stay blank (never the whole difference under one of them)."""
    runs, root = tmp_path / "runs", str(tmp_path)
    finished(runs, "folder", method="ce", overall=50.0, few=5.0, data_root=root, sets=["recipe=paper"])
    finished(runs, "folder", method="ce", overall=56.0, few=9.0, data_root=root, sets=["recipe=reference"])
    finished(runs, "folder", method="ce", overall=53.0, few=6.0, data_root=root,
             sets=["recipe=reference", "data.transform=study"])  # the folder's paper preprocessing
    finished(runs, "folder", method="focal", overall=40.0, few=2.0, data_root=root, sets=["recipe=paper"])
    finished(runs, "folder", method="focal", overall=41.0, few=3.0, data_root=root, sets=["recipe=reference"])
    table = build(tmp_path, "recipes", dataset="folder")
    rows = {r[0]: dict(zip(table.columns, r)) for r in table.rows}
    split = ("Overall paper", "Overall ref.", "Δ overall", "Δ method", "Δ preproc.", "Few paper", "Few ref.",
             "Δ few", "Δ few method", "Δ few preproc.")
    assert {k: rows["ce"][k] for k in split} == dict(zip(split, (50.0, 56.0, 6.0, 3.0, 3.0, 5.0, 9.0, 4.0, 1.0, 3.0)))
    assert {k: rows["focal"][k] for k in split} == dict(zip(split, (40.0, 41.0, 1.0, None, None, 2.0, 3.0, 1.0,
                                                                    None, None)))


def test_a_cost_point_is_named_as_its_table_row(tmp_path):
    """Two cells of one method: each point carries the row's method and variant, as the tables print them."""
    runs = tmp_path / "runs"
    finished(runs, method="ce", few=3.0)
    finished(runs, method="ce", few=4.0, sets=["train.lr=0.5"])
    main = build(tmp_path)  # ingests the runs
    with open_readonly(tmp_path / "r.duckdb") as con:
        points = {p.label: p.few for p in tables.cost_points(con, "mnist-lt")}
    assert points == {" ".join(r[:2]): r[main.columns.index("Few")] for r in main.rows}
    assert points == {"ce lr=0.03": 3.0, "ce lr=0.5": 4.0}


def test_ci_intervals_come_from_each_cells_stored_counts_and_skip_a_cell_missing_some(tmp_path):
    """``table main --ci``: a cell's interval is the bootstrap of its runs' per-class test counts, with the
    number of draws asked for; a cell with a run stored without counts gets none, and the note says why."""
    from lvmbench.store import intervals

    runs = tmp_path / "runs"
    per_class = [{"class_id": c, "class_name": f"c{c}", "n_train": (100, 10, 2)[c % 3], "accuracy": 100.0 * (c % 2),
                  "n_test": 1, "n_correct": c % 2} for c in range(10)]  # mnist-lt's 10 classes, one test image each

    def with_counts(run):
        run.per_class_file("test").write_text(json.dumps(per_class))
        test = json.loads((run.eval_dir / "test.json").read_text())
        (run.eval_dir / "test.json").write_text(json.dumps({**test, "worst_class": 0.0}))

    with_counts(finished(runs, method="ce", seed=0))
    finished(runs, method="ce", seed=1)  # stored without per-class counts
    with_counts(finished(runs, method="focal"))
    with_counts(finished(runs, method="focal", seed=1))
    table = build(tmp_path, "main", ci=True, resamples=50)
    overall = {r[0]: r[table.columns.index("Overall")] for r in table.rows}
    counts = intervals.ClassCounts.from_runs([[(c["n_train"], c["n_test"], c["n_correct"]) for c in per_class]] * 2)
    assert overall["focal"].ci == pytest.approx(intervals.intervals(counts, 50)["overall"])
    assert (float(overall["focal"]), overall["focal"].std, overall["focal"].n) == (50.0, 0.0, 2)  # the spread stays
    assert overall["focal"].ci != pytest.approx(intervals.intervals(counts)["overall"])  # 50 draws, not the default
    assert overall["ce"].ci is None
    assert table.notes[-1].endswith("(50 draws, seeded); – : a run without per-class test counts")


def test_the_cost_tables_cells_are_the_means_of_each_cells_records(tmp_path):
    """``table cost`` (the study's Table 8): every column of a cell as a user reads it, from its runs' records;
    the carbon factor in the title and in kg CO2; ``--backbone``; no published rows unless asked for."""
    runs = tmp_path / "runs"
    for seed, (wall_s, kwh, watts) in enumerate(((3600.0, 0.2, 200.0), (7200.0, 0.4, 300.0))):
        finished(runs, seed=seed, wall_s=wall_s, s_per_iter=0.1 * (seed + 1), energy_kwh=kwh, avg_power_w=watts,
                 trainable_params=5130, loader_wait_s=0.01, device="cuda", gpu_shared=seed == 1)
    table = build(tmp_path, "cost", carbon_kg_per_kwh=0.5)
    assert table.title == "Cost — mnist-lt (0.5 kg CO2/kWh)"
    assert table.columns == ["Method", "Variant", "Backbone", "Seeds", "Trainable", "s/iter", "Loader wait s/iter",
                             "Device h", "Avg W", "kWh", "kg CO2"]
    assert table.rows == [["ce", "", "tiny-clip", 2, 5130, pytest.approx(0.15), 0.01, pytest.approx(1.5), 250.0,
                           pytest.approx(0.3), pytest.approx(0.15)]]
    assert table.higher_is_better == dict.fromkeys(table.columns[4:], False)
    assert table.kinds == [] and table.notes == [  # a cell without a published counterpart is named only when asked
        "Avg W, kWh and kg CO2 are device-wide for ce (tiny-clip): their GPU also ran other processes, whose power "
        "is included (memory figures are per process)"]
    assert build(tmp_path, "cost").title == "Cost — mnist-lt (0.544 kg CO2/kWh)"
    narrow, wide = (printed(tmp_path / "r.duckdb", "cost", width) for width in (80, 200))
    assert "Trainable" not in narrow and "Loader wait" not in narrow  # Table 8 publishes neither
    assert "Trainable" in wide and "Loader wait" in wide
    assert " 0.150 " in narrow and " 0.300 " in narrow  # s/iter and kWh to three significant digits
    assert build(tmp_path, "cost", backbone="ViT-B-16").rows == []
    assert build(tmp_path, "memory").title == "Peak memory (MiB) by backbone — mnist-lt"


def test_the_recipes_table_pairs_runs_by_their_variant_without_the_preprocessing(tmp_path):
    """Rows of one method at several settings: each pairs its own paper and reference runs, and shows its
    variant without the preprocessing; the title names what was asked for, the note how Δ splits."""
    runs, root = tmp_path / "runs", str(tmp_path)
    for lr, iters, base in (("0.5", 7, 50.0), ("0.25", 9, 30.0)):
        for recipe, gain in (("paper", 0.0), ("reference", 4.0)):
            finished(runs, "folder", overall=base + gain, data_root=root,
                     sets=[f"recipe={recipe}", f"train.lr={lr}", f"train.iters={iters}"])
        finished(runs, "folder", overall=base + 1.0, data_root=root,  # its variant: "iters=… lr=… transform=study"
                 sets=["recipe=reference", "data.transform=study", f"train.lr={lr}", f"train.iters={iters}"])
    table = build(tmp_path, "recipes", dataset="folder", backbone="tiny-clip")
    assert table.title == "Recipes: paper vs reference — folder, tiny-clip (test, %)"
    assert sorted((r[1], r[3], r[4], r[6]) for r in table.rows) == [("iters=7 lr=0.5", 50.0, 54.0, 1.0),
                                                                      ("iters=9 lr=0.25", 30.0, 34.0, 1.0)]
    assert table.notes[-1] == ("Δ = reference - paper = Δ method + Δ preproc.; Δ method: a reference run with the "
                               "paper's preprocessing (--set recipe=reference data.transform=...) - paper")
    assert build(tmp_path, "recipes", dataset="places-lt").title == "Recipes: paper vs reference — places-lt (test, %)"


def test_the_backbone_tables_put_each_method_on_one_row_across_backbones(tmp_path):
    """``table backbones`` / ``table memory``: one row per method, one column per backbone; accuracies carry
    their spread over seeds, memory stays a plain mean; the settings every row shares are said once."""
    runs = tmp_path / "runs"
    for backbone, overall, mem in (("tiny-clip", (60.0, 64.0), 100.0), ("ViT-B-16", (70.0, 70.0), 900.0)):
        for seed in (0, 1):
            finished(runs, seed=seed, overall=overall[seed], backbone=backbone, sets=["train.iters=7"],
                     peak_mem_mib=mem + seed * 10)
    backbones, memory = build(tmp_path, "backbones"), build(tmp_path, "memory")
    assert backbones.columns == memory.columns == ["Method", "Variant", "ViT-B-16", "tiny-clip"]
    assert backbones.rows == [["ce", "", 70.0, 62.0]] and backbones.rows[0][3].std == pytest.approx(2 ** 1.5)
    assert memory.rows == [["ce", "", 905.0, 105.0]] and not hasattr(memory.rows[0][3], "std")
    assert backbones.notes == memory.notes == ["all rows: iters=7"]
    assert "±" in printed(tmp_path / "r.duckdb", "backbones", 120)
    assert "±" not in printed(tmp_path / "r.duckdb", "memory", 120)
    assert build(tmp_path, "memory", dataset="places-lt").title == "Peak memory (MiB) by backbone — places-lt"
    assert build(tmp_path, "main", backbone="ViT-B-16").rows[0][2:4] == ["ViT-B-16", 2]  # --backbone: its runs only
    assert len(build(tmp_path, "main", backbone="ViT-B-16").rows) == 1
    assert [build(tmp_path, "main", **kw).title for kw in ({}, {"backbone": "ViT-B-16"}, {"dataset": "places-lt"})] == [
        "Main results — mnist-lt (test, %)", "Main results — mnist-lt, ViT-B-16 (test, %)",
        "Main results — places-lt (test, %)"]
    narrow = printed(tmp_path / "r.duckdb", "main", 80)
    assert "Recall" not in narrow and "Recall" in printed(tmp_path / "r.duckdb", "main", 200)  # --wide's columns


def test_a_cost_figure_no_run_recorded_stays_blank(tmp_path):
    finished(tmp_path / "runs", wall_s=None, trainable_params=None, s_per_iter=None)
    table = build(tmp_path, "cost")
    row = dict(zip(table.columns, table.rows[0]))
    assert [row[c] for c in ("Trainable", "s/iter", "Device h", "Avg W", "kWh", "kg CO2")] == [None] * 6


def test_a_backbone_with_other_weights_is_named_with_them(tmp_path):
    """Weights other than the default ones are shown beside the backbone: a tag as it is, a file by its name."""
    weights = tmp_path / "weights" / "my-tiny.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"not read by a table")
    finished(tmp_path / "runs", overall=40.0, pretrained=str(weights))
    finished(tmp_path / "runs", overall=50.0, pretrained="laion2b_s34b_b88k")
    finished(tmp_path / "runs", overall=60.0)
    assert sorted((r[2], r[4]) for r in build(tmp_path).rows) == [
        ("tiny-clip", 60.0), ("tiny-clip (laion2b_s34b_b88k)", 50.0), ("tiny-clip (my-tiny.pt)", 40.0)]


def test_rows_of_an_older_store_keep_their_place_and_notes_name_their_dataset(tmp_path):
    """A run stored without its config (a store not ingested since) or of a method this version no longer has
    still gets its row, the latter last; a method's paper row comes before its others; with several datasets each
    note on shared settings names its dataset."""
    import duckdb

    runs = tmp_path / "runs"
    finished(runs, method="focal", overall=30.0, sets=["train.iters=7"])
    finished(runs, method="ce", overall=40.0, sets=["train.iters=7"])
    finished(runs, method="ce", overall=45.0, sets=["train.iters=7", "recipe=reference"])
    finished(runs, method="ldam", overall=50.0, sets=["train.iters=7"])
    finished(runs, "folder", overall=60.0, data_root=str(tmp_path), sets=["train.iters=9"])
    build(tmp_path)
    con = duckdb.connect(str(tmp_path / "r.duckdb"))
    con.execute("UPDATE runs SET method = 'retired' WHERE method = 'ldam'")
    con.execute("UPDATE runs SET config = NULL WHERE method = 'focal'")
    con.close()
    with open_readonly(tmp_path / "r.duckdb") as db:
        table = tables.build(db, "main")
    overall = table.columns.index("Overall")
    assert [(r[0], r[1], r[overall]) for r in table.rows] == [
        ("folder", "ce", 60.0), ("mnist-lt", "ce", 40.0), ("mnist-lt", "ce (reference)", 45.0),
        ("mnist-lt", "focal", 30.0), ("mnist-lt", "retired", 50.0)]
    assert table.notes == ["folder: all rows: iters=9"]  # mnist-lt's rows share nothing: focal's config is gone
