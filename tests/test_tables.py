"""Table cells average the runs of one result group only (same config but the seed), never datasets."""
from __future__ import annotations

import json

import pytest

from lvmbench import config
from lvmbench.runs import plan
from lvmbench.store import open_readonly, open_writer, tables
from lvmbench.store.ingest import ingest_dir


def finished(runs, dataset="mnist-lt", method="ce", seed=0, overall=50.0, ended=0, sets=(), data_root=None):
    spec = config.resolve(dataset, "tiny-clip", method, seed=seed, data_root=data_root,
                          overrides=config.parse_sets(list(sets)))
    run = plan.prepare(spec, runs)
    run.write_status(status="finished", started_at=1_700_000_000, ended_at=1_700_000_100 + ended, stage=1,
                     wall_s=60.0, s_per_iter=0.2, peak_mem_mib=900.0, device="cpu")
    (run.eval_dir / "test.json").write_text(json.dumps(
        {"split": "test", "overall": overall, "many": 1.0, "medium": 1.0, "few": 1.0, "precision": 1.0,
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
    for kind in ("backbones", "memory", "cost"):
        assert {r[0] for r in build(tmp_path, kind).rows} == {"folder", "mnist-lt"}
    assert "Device hours" in build(tmp_path, "cost").columns


def test_a_cell_averages_seeds_of_one_config_only(tmp_path):
    runs = tmp_path / "runs"
    root = str(tmp_path)
    finished(runs, "folder", seed=0, overall=40.0, data_root=root)
    finished(runs, "folder", seed=1, overall=44.0, data_root=root)
    finished(runs, "folder", seed=0, overall=10.0, data_root=root, ended=5, sets=["data.subsample_lt=true"])
    finished(runs, "folder", seed=1, overall=20.0, data_root=root, ended=6, sets=["data.subsample_lt=true"])
    finished(runs, "folder", seed=1, overall=30.0, data_root=root, ended=9, sets=["data.subsample_lt=true"])  # rerun
    table = build(tmp_path, dataset="folder")
    got = sorted((r[0], r[1], r[3], r[4]) for r in table.rows)
    assert got == [("ce", "subsample_lt=off", 2, pytest.approx(42.0)),
                   ("ce", "subsample_lt=on", 2, pytest.approx(20.0))]  # latest of seed 1 counts


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
        points = {p.label: p for p in tables.cost_points(con, "mnist-lt")}
    assert set(points) == {"ce", "zeroshot"}
    # by hand: ce averages its two seeds, (30+40)/2 few-shot and (360+1080)/2 s = 0.2 h
    assert (points["ce"].few, points["ce"].hours, points["ce"].params) == (35.0, pytest.approx(0.2), 1000)
    assert (points["zeroshot"].few, points["zeroshot"].hours, points["zeroshot"].params) == (
        10.0, pytest.approx(0.01), 0)
    assert points["ce"].backbone == "tiny-clip"


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
