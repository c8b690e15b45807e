"""Table cells average the runs of one result group only (same config but the seed), never datasets."""
from __future__ import annotations

import json

import pytest

from lvmbench import config, launch
from lvmbench.store import open_readonly, open_writer, tables
from lvmbench.store.ingest import ingest_dir


def finished(runs, dataset="mnist-lt", method="ce", seed=0, overall=50.0, ended=0, sets=(), data_root=None):
    spec = config.resolve(dataset, "tiny-clip", method, seed=seed, data_root=data_root,
                          overrides=config.parse_sets(list(sets)))
    run = launch.prepare(spec, runs)
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
    assert table.columns[:4] == ["Dataset", "Method", "Backbone", "Seeds"]
    assert sorted((r[0], r[3], r[4]) for r in table.rows) == [("folder", 1, 40.0), ("mnist-lt", 1, 80.0)]
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
    got = sorted((r[0], r[2], r[3]) for r in table.rows)
    assert got == [("ce [data.subsample_lt=False]", 2, pytest.approx(42.0)),
                   ("ce [data.subsample_lt=True]", 2, pytest.approx(20.0))]  # latest of seed 1 counts
