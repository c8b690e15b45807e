"""The command line as a user meets it: one-line errors, exit codes, nothing stored on bad input."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from lvmbench import cli

from .conftest import TINY


def lvmbench(*args, env=None):
    return subprocess.run([sys.executable, "-m", "lvmbench", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("args,message", [
    (["run", "--headless", "--method", "nope"], "error: unknown method 'nope'"),
    (["run", "--headless", "--dataset", "imagenet"], "error: unknown dataset 'imagenet' (did you mean imagenet-lt"),
    (["run", "--headless", "--backbone", "ViT-B-61"], "error: unknown backbone 'ViT-B-61' (did you mean ViT-B-16"),
    (["run", "--headless", "--set", "train.iters=0"], "error: train.iters=0: must be > 0"),
    (["run", "--headless", "--set", "train.batchsize=8"], "error: unknown --set key 'train.batchsize'"),
    (["run", "--headless", "--dataset", "places-lt", "--data-root", "/does/not/exist"],
     "error: data root not found: /does/not/exist"),
    (["run", "--headless", "--pretrained", "/does/not/exist.pt"], "error: checkpoint file not found: /does/not/exist.pt"),
    (["sql", "SELECT 1"], "error: no results database at"),
])
def test_user_errors_are_one_line(store, capsys, args, message):
    results, runs = store
    assert cli.main(args) == 2
    out = capsys.readouterr()
    assert out.err.startswith(message), out.err
    assert len(out.err.strip().splitlines()) == 1 and "Traceback" not in out.err and not out.out
    assert not results.exists() and not runs.exists()


def test_a_user_error_is_one_line_from_the_process_too(store):
    """What a shell sees: exit code 2 and one line on stderr, nothing printed while importing."""
    results, runs = store
    out = lvmbench("run", "--headless", "--method", "nope")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("error: unknown method 'nope'") and len(out.stderr.strip().splitlines()) == 1
    assert not results.exists() and not runs.exists()


def test_list_methods_shows_every_method():
    from lvmbench.catalog import METHODS

    out = lvmbench("list", "methods")
    assert out.returncode == 0
    for name in METHODS:
        assert name in out.stdout


def test_list_methods_piped_keeps_each_description_on_one_line():
    """Piped output is never hard-wrapped: every method's description survives whole on its row."""
    from lvmbench.catalog import METHODS

    out = lvmbench("list", "methods", env={"COLUMNS": "80"})
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert max(map(len, lines)) > 80
    for m in METHODS.values():
        assert any(m.name in line and m.summary in line for line in lines), m.name


@pytest.mark.slow
def test_run_headless_then_query(store, tmp_path):
    results, runs = store
    out = lvmbench("run", "--headless", "--method", "ce", "--set", *TINY)
    assert out.returncode == 0, out.stderr
    assert "overall" in out.stdout
    q = lvmbench("sql", "SELECT method, status, stage FROM runs", "--format", "json")
    assert json.loads(q.stdout) == [{"method": "ce", "status": "finished", "stage": 1}]
    t = lvmbench("table", "main", "--dataset", "mnist-lt", "--format", "csv")
    header, row = t.stdout.strip().splitlines()
    means = ["Overall", "Many", "Medium", "Few", "Precision", "Recall", "F1"]
    assert header.split(",")[:4] == ["Method", "Variant", "Backbone", "Seeds"]
    assert [c for c in header.split(",") if c in means] == means  # each accuracy column, in the paper's order
    assert all(f"{c} std" in header.split(",") for c in means)  # and its spread over seeds (empty for one seed)
    assert row.startswith("ce,,tiny-clip,1,")  # one run: nothing tells it apart, its Variant is empty
    md = lvmbench("sql", "SELECT count(*) AS n FROM evals", "--format", "markdown")
    assert "| n |" in md.stdout and "| 2 |" in md.stdout  # val and test
    bad = lvmbench("sql", "SELECT nope FROM runs")
    assert bad.returncode == 2 and bad.stderr.startswith("error: SQL error:")


@pytest.mark.slow
def test_two_stage_reuses_one_stage1_run(store):
    results, runs = store
    for method in ("marc", "lws"):
        out = lvmbench("run", "--headless", "--method", method, "--set", *TINY)
        assert out.returncode == 0, out.stderr
    q = lvmbench("sql", "SELECT method, stage, parent_run_id FROM runs ORDER BY started_at", "--format", "json")
    rows = json.loads(q.stdout)
    assert [r["method"] for r in rows] == ["ce", "marc", "lws"]
    ce_id = lvmbench("sql", "SELECT run_id FROM runs WHERE method = 'ce'", "--format", "csv").stdout.split()[1]
    assert [r["parent_run_id"] for r in rows[1:]] == [ce_id, ce_id] and [r["stage"] for r in rows] == [1, 2, 2]


def test_demo_full_adds_lift_to_the_embedded_grid(store, monkeypatch):
    from lvmbench import sweep
    from lvmbench.exec.presets import EMBEDDED_METHODS

    seen = []
    monkeypatch.setattr(sweep, "run_sweep", lambda axes, *a, **kw: seen.append(axes) or SimpleNamespace(ok=True))
    assert cli.main(["demo"]) == 0 and cli.main(["demo", "--full"]) == 0
    assert seen[0].methods == list(EMBEDDED_METHODS) and seen[1].methods == [*EMBEDDED_METHODS, "lift"]
    assert seen[1].datasets == ["mnist-lt"] and seen[1].backbones == ["tiny-clip"]


def test_demo_full_with_methods_is_one_line(store, capsys):
    assert cli.main(["demo", "--full", "--method", "ce"]) == 2
    assert capsys.readouterr().err.strip() == ("error: demo: --full adds LIFT to the embedded preset's methods; "
                                               "with --method, name the methods yourself")
