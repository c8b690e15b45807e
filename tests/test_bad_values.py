"""Property-based: generated bad values thrown at every settings key (``--set`` and TOML) and at every
field ingest reads. Whatever the value: one line on stderr, the documented exit code (2 for a setting,
1 for an ingest that skipped a folder), nothing trained, nothing stored half (issue 27)."""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lvmbench import cli, config
from lvmbench.store import open_readonly

from .test_store import fake_run

# Examples per test: every key is drawn several times; ingest examples build two runs and a store each.
SETTINGS = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
INGEST = settings(SETTINGS, max_examples=25)
TEXTS = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)


def _breaks(param: config.Param, value) -> bool:
    """Whether ``value`` (already of the key's type) is outside what ``param`` allows."""
    try:
        config.check_value("x", value, {"x": param})
    except config.UserError:
        return True
    return False


def bad_text(key: str) -> st.SearchStrategy[str]:
    """Text that ``--set KEY=TEXT`` must refuse: of another type, out of range, not a choice."""
    param = config.SCHEMA[key]
    if param.type is int:
        out_of_range = st.integers().filter(lambda v: _breaks(param, v)) | st.integers(min_value=2 ** 63)
        return st.one_of(out_of_range.map(str), st.sampled_from(["1.5", "1e3", "x", "", "0x10", "nan"]))
    if param.type is float:
        numbers = st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: _breaks(param, v))
        return st.one_of(numbers.map(repr), st.sampled_from(["x", "", "1,5", "1..0"]))
    if param.type is bool:
        return TEXTS.filter(lambda t: t.strip().lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"))
    return TEXTS.filter(lambda t: t.strip() not in param.choices and t.strip().lower() not in ("none", "null"))


CHECKED = [k for k, p in config.SCHEMA.items() if p.type is not str or p.choices]  # free text is any text
TYPED_BAD = {int: st.one_of(st.floats(allow_nan=False), TEXTS, st.booleans(), st.integers(min_value=2 ** 63)),
             float: st.one_of(TEXTS, st.booleans(), st.lists(st.integers(), max_size=2)),
             bool: st.one_of(st.integers(min_value=2), TEXTS.filter(lambda t: t not in ("1", "0", "true", "false",
                                                                                         "yes", "no", "on", "off")),
                             st.floats(allow_nan=False)),
             str: st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(TEXTS, max_size=2))}


def assert_refused(capsys, code: int, where: Path, expected: int = 2) -> str:
    err = capsys.readouterr().err
    assert code == expected, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (where / "runs").exists() and not (where / "r.duckdb").exists()  # nothing trained or stored
    return err


def run_args(where: Path) -> list[str]:
    return ["run", "--headless", "--runs-dir", str(where / "runs"), "--results", str(where / "r.duckdb")]


@SETTINGS
@given(data=st.data(), key=st.sampled_from(CHECKED))
def test_every_setting_refuses_bad_text_in_one_line(capsys, data, key):
    raw = data.draw(bad_text(key), label="value")
    with tempfile.TemporaryDirectory() as where:
        code = cli.main([*run_args(Path(where)), "--set", f"{key}={raw}"])
        err = assert_refused(capsys, code, Path(where))
    assert key in err


@SETTINGS
@given(data=st.data(), key=st.sampled_from(sorted(config.SCHEMA)))
def test_every_setting_refuses_a_toml_value_of_another_type(capsys, data, key):
    param = config.SCHEMA[key]
    value = data.draw(TYPED_BAD[param.type], label="value")
    if param.type is str and not param.choices and not isinstance(value, list):
        return  # a free-text setting takes any scalar, written as text
    if param.type is float and isinstance(value, str):
        try:
            float(value)
            return  # a number spelled as text is a number
        except ValueError:
            pass
    with tempfile.TemporaryDirectory() as where:
        path = Path(where) / "s.toml"
        path.write_text(f"{json.dumps(key)} = {_toml(value)}\n")
        code = cli.main([*run_args(Path(where)), "--config", str(path)])
        assert_refused(capsys, code, Path(where))


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else "inf")
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


# -- ingest ------------------------------------------------------------------------------------------------

NOT_A_PERCENT = st.one_of(st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not 0 <= v <= 100),
                          st.integers().filter(lambda v: not 0 <= v <= 100), st.booleans(), TEXTS,
                          st.lists(st.integers(), max_size=2), st.dictionaries(TEXTS, st.integers(), max_size=1))
NOT_A_COUNT = st.one_of(st.integers(max_value=-1), st.integers(min_value=2 ** 63), st.floats(), st.booleans(), TEXTS)
EVAL_FIELDS = {**{k: NOT_A_PERCENT for k in ("overall", "many", "medium", "few", "precision", "recall", "f1",
                                              "worst_class")},
               "n_samples": NOT_A_COUNT}
SPEC_FIELDS = {"dataset": st.one_of(st.none(), st.integers(), st.booleans(), st.lists(TEXTS, max_size=2),
                                    st.just("")),
               "method": st.one_of(st.none(), st.integers(), st.floats(), st.just(" ")),
               "backbone": st.one_of(st.none(), st.integers(), st.dictionaries(TEXTS, TEXTS, max_size=1)),
               "seed": st.one_of(st.none(), st.integers(max_value=-1), st.integers(min_value=2 ** 32),
                                 st.floats(), st.booleans(), TEXTS),
               "train.iters": NOT_A_COUNT.filter(lambda v: not (isinstance(v, int) and not isinstance(v, bool)
                                                                and v >= 0)),
               "train.batch_size": NOT_A_COUNT}
PER_CLASS_FIELDS = {"class_id": NOT_A_COUNT, "accuracy": NOT_A_PERCENT.filter(lambda v: v is not None),
                    "n_train": NOT_A_COUNT, "n_test": NOT_A_COUNT}


def _ingest_damaged(capsys, file: str, damage) -> None:
    """A good run and a damaged one: ingest stores the good one whole and skips the other, in one line."""
    with tempfile.TemporaryDirectory() as where:
        runs, results = Path(where) / "runs", Path(where) / "r.duckdb"
        good, bad = fake_run(runs, "ce"), fake_run(runs, "focal")
        path = bad.path / file
        path.write_text(json.dumps(damage(json.loads(path.read_text()))))
        code = cli.main(["ingest", "--runs-dir", str(runs), "--results", str(results)])
        err = capsys.readouterr().err
        assert code == 1, err
        assert err.startswith(f"skipped {bad.path}: ") and len(err.strip().splitlines()) == 1, err
        with open_readonly(results) as con:
            held = {t: {r[0] for r in con.execute(f"SELECT DISTINCT run_id FROM {t}").fetchall()}
                    for t in ("runs", "evals", "per_class", "metrics", "system", "run_sources")}
        assert all(ids == {good.run_id} for ids in held.values()), held


@INGEST
@given(data=st.data(), field=st.sampled_from(sorted(EVAL_FIELDS)))
def test_every_evaluation_field_refuses_bad_values(capsys, data, field):
    value = data.draw(EVAL_FIELDS[field], label="value")
    _ingest_damaged(capsys, "eval/test.json", lambda ev: {**ev, field: value})


@INGEST
@given(data=st.data(), field=st.sampled_from(sorted(SPEC_FIELDS)))
def test_every_identity_field_refuses_bad_values(capsys, data, field):
    value = data.draw(SPEC_FIELDS[field], label="value")
    _ingest_damaged(capsys, "spec.json", lambda spec: {**spec, field: value})


@INGEST
@given(data=st.data(), field=st.sampled_from(sorted(PER_CLASS_FIELDS)))
def test_every_per_class_field_refuses_bad_values(capsys, data, field):
    value = data.draw(PER_CLASS_FIELDS[field], label="value")
    _ingest_damaged(capsys, "eval/per_class_test.json", lambda rows: [{**rows[0], field: value}])
