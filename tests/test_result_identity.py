"""One computation, one identity: an explicit default and an omitted one are the same run (config hash,
result group, a sweep's ``done``) and the same table row, for every setting of every registered method;
runs stored before loss defaults were resolved into specs join the runs that computed the same."""
from __future__ import annotations

import json

import pytest

from lvmbench import catalog, cli, config
from lvmbench.hparams import LOSS_DEFAULTS
from lvmbench.runs import plan
from lvmbench.store import open_readonly, open_writer, tables
from lvmbench.store.ingest import ingest_dir
from .conftest import finish


def typed(value) -> str:
    """A value as a user types it after ``--set key=`` (a float without its ``.0``: ``2``, not ``2.0``)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def explicit_defaults(spec: dict) -> list[str]:
    """``--set`` pairs that name every setting of a resolved spec with the value it already has."""
    return [f"{k}={typed(v)}" for k, v in spec.items()
            if (k in config.SCHEMA or k.startswith("loss.")) and k not in ("stage1.run_id", "data.val_list")]


@pytest.mark.parametrize("method", sorted(catalog.METHODS))
def test_every_setting_given_its_default_is_the_same_run(method):
    omitted = config.resolve("mnist-lt", "tiny-clip", method)
    pairs = explicit_defaults(omitted)
    assert any(p.startswith("train.lr=") for p in pairs)
    loss = catalog.METHODS[method].loss
    assert {p.split("=")[0] for p in pairs} >= {f"loss.{hp}" for hp in LOSS_DEFAULTS.get(loss, {})}
    explicit = config.resolve("mnist-lt", "tiny-clip", method, overrides=config.parse_sets(pairs))
    differs = {k for k in omitted.keys() | explicit.keys() if omitted.get(k) != explicit.get(k)
               or type(omitted.get(k)) is not type(explicit.get(k))}
    assert not differs, f"{method}: {sorted(differs)}"
    assert config.config_hash(explicit) == config.config_hash(omitted)
    assert config.result_group(explicit) == config.result_group(omitted)


def test_a_value_that_means_off_is_the_default_off():
    omitted = config.resolve("mnist-lt", "tiny-clip", "cbw")
    zero = config.resolve("mnist-lt", "tiny-clip", "cbw", overrides=config.parse_sets(["loss.beta=0"]))
    assert zero["loss.beta"] is None and config.config_hash(zero) == config.config_hash(omitted)


def test_every_loss_has_its_defaults_declared_without_torch():
    from lvmbench.methods.losses import LOSSES

    assert set(LOSSES) == set(LOSS_DEFAULTS)
    assert {m.loss for m in catalog.METHODS.values()} - {None} <= set(LOSS_DEFAULTS)


def focal(*sets, seed=0):
    return config.resolve("mnist-lt", "tiny-clip", "focal", seed=seed, overrides=config.parse_sets(list(sets)))


def test_a_sweep_with_an_explicit_default_finds_the_run_done(store, capsys):
    results, runs = store
    done = finish(runs, focal())
    assert cli.main(["sweep", "--method", "focal", "--set", "loss.gamma=2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"done: {done.run_id}" in out and " new" not in out


def test_an_explicit_default_and_an_omitted_one_are_one_table_row(tmp_path):
    runs = tmp_path / "runs"
    finish(runs, focal(), overall=40.0)
    finish(runs, focal("loss.gamma=2", seed=1), overall=44.0)
    with open_writer(tmp_path / "r.duckdb") as con:
        ingest_dir(con, runs)
    with open_readonly(tmp_path / "r.duckdb") as con:
        table = tables.build(con, "main")
    assert [(r[0], r[1], r[3], float(r[4])) for r in table.rows] == [("focal", "", 2, 42.0)]


def as_stored_before(run) -> dict:
    """Rewrite a run's spec.json as lvmbench wrote it before loss defaults were resolved into specs."""
    spec = json.loads(run.spec_file.read_text())
    old = {k: v for k, v in spec.items() if not k.startswith("loss.")}
    digest = config._digest  # the hash of that time: the same digest of a spec without loss.*
    old.update(config_hash=digest(config.hashed_body(old)), result_group=digest(config.hashed_body(old, ("seed",))))
    run.spec_file.write_text(json.dumps(old))
    return old


def test_a_run_stored_before_is_regrouped_on_ingest_and_found_done(store):
    results, runs = store
    before = finish(runs, focal(), overall=40.0)
    old = as_stored_before(before)
    now = focal("loss.gamma=2")
    assert old["config_hash"] != config.config_hash(now)
    with open_writer(results) as con:
        ingest_dir(con, runs)
        assert con.execute("SELECT config_hash FROM runs").fetchone()[0] == config.config_hash(now)
        # a store written by the old version: its rows still hold the old identity; ingest regroups them
        con.execute("UPDATE runs SET config = ?, config_hash = ?", [json.dumps(old), old["config_hash"]])
        report = ingest_dir(con, runs)
        assert report.unchanged == [before.run_id]
        stored = con.execute("SELECT config_hash, config FROM runs").fetchone()
    assert stored[0] == config.config_hash(now)
    assert json.loads(stored[1])["result_group"] == config.result_group(now)
    finish(runs, {**now, "seed": 1}, overall=44.0)
    with open_writer(results) as con:
        ingest_dir(con, runs)
    with open_readonly(results) as con:
        assert [(r[3], float(r[4])) for r in tables.build(con, "main").rows] == [(2, 42.0)]
    job, = plan.plan([now], runs)
    assert job.state == plan.SKIPPED and job.run.run_id == before.run_id
