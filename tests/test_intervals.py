"""Bootstrap intervals and paired comparisons (lvmbench.intervals): against hand-enumerated bootstrap
distributions on small cases and against scipy.stats.bootstrap; then through the CLI on a store."""
from __future__ import annotations

import contextlib
import io
import itertools
import json

import numpy as np
import pytest
from scipy import stats

from lvmbench import intervals
from lvmbench.evaluate import compute_metrics
from lvmbench.intervals import ClassCounts

MANY, FEW = 500, 5  # training counts of a many-shot and a few-shot class


def counts(correct, n, n_train) -> ClassCounts:
    """One or several seeds (rows of ``correct``) of classes with ``n`` test images each."""
    correct = np.atleast_2d(correct)
    return ClassCounts.from_runs([list(zip(n_train, n, row)) for row in correct])


def frequencies(values: np.ndarray) -> dict[float, float]:
    keys, hits = np.unique(np.round(values, 9), return_counts=True)
    return dict(zip(keys.tolist(), (hits / len(values)).tolist()))


# --------------------------------------------------------------------------- hand computations


def test_overall_is_recomputed_from_the_drawn_classes_images():
    """Two classes, 10 and 30 test images, 10 and 15 right: the draws are {0,0}, {1,1} or one of each,
    so overall is 100 (1/4), 50 (1/4) or 25/40 = 62.5 (1/2)."""
    cell = counts([10, 15], [10, 30], [MANY, MANY])
    (values,) = intervals._bootstrap([cell], 20000, seed=1)
    got = frequencies(values["overall"])
    assert set(got) == {50.0, 62.5, 100.0}
    for value, p in {100.0: 0.25, 62.5: 0.5, 50.0: 0.25}.items():
        assert got[value] == pytest.approx(p, abs=0.015)
    assert intervals.estimate(cell)["overall"] == pytest.approx(62.5)


def test_interval_is_the_percentiles_of_the_enumerated_bootstrap_distribution():
    """Four few-shot classes at 0, 50, 80 and 100 %: all 4**4 equally likely draws enumerated by hand."""
    acc = [0, 50, 80, 100]
    cell = counts([0, 5, 8, 10], [10] * 4, [FEW] * 4)
    exact = np.sort([np.mean(draw) for draw in itertools.product(acc, repeat=4)])
    cdf_values, cdf = np.unique(exact, return_counts=True)
    cdf = np.cumsum(cdf) / len(exact)
    lo_exact = cdf_values[np.searchsorted(cdf, 0.025)]  # the first value whose CDF reaches 2.5 %
    hi_exact = cdf_values[np.searchsorted(cdf, 0.975)]
    low, high = intervals.intervals(cell, resamples=40000, seed=3)["few"]
    assert (low, high) == (pytest.approx(lo_exact), pytest.approx(hi_exact))
    assert (lo_exact, hi_exact) == (pytest.approx(20.0), pytest.approx(90.0))


def test_seeds_are_a_second_level_of_the_bootstrap():
    """One class, two seeds at 40 and 80 %: the draws of seeds give 40 (1/4), 60 (1/2) and 80 (1/4)."""
    cell = counts([[4], [8]], [10], [FEW])
    (values,) = intervals._bootstrap([cell], 20000, seed=0)
    got = frequencies(values["few"])
    assert set(got) == {40.0, 60.0, 80.0}
    assert got[60.0] == pytest.approx(0.5, abs=0.015)
    assert intervals.estimate(cell)["few"] == pytest.approx(60.0)


def test_classes_are_drawn_within_their_shot_group():
    """Many-shot classes all right, few-shot all wrong: a draw that kept the group sizes cannot move any figure."""
    cell = counts([10, 10, 0, 0], [10] * 4, [MANY, MANY, FEW, FEW])
    ci = intervals.intervals(cell, resamples=2000)
    assert ci["many"] == (100.0, 100.0) and ci["few"] == (0.0, 0.0) and ci["overall"] == (50.0, 50.0)
    assert ci["medium"] is None


def test_intervals_are_seeded_and_reproducible():
    rng = np.random.default_rng(0)
    cell = counts(rng.integers(0, 11, (3, 40)), [10] * 40, [MANY] * 20 + [FEW] * 20)
    assert intervals.intervals(cell, seed=7) == intervals.intervals(cell, seed=7)
    assert intervals.intervals(cell, seed=7) != intervals.intervals(cell, seed=8)


def test_paired_differences_hand_cases():
    rng = np.random.default_rng(1)
    n, n_train = [10] * 30, [MANY] * 10 + [FEW] * 20
    a = counts(rng.integers(0, 11, 30), n, n_train)
    same = intervals.paired(a, a, resamples=1000)
    assert all(d.diff == 0 and d.low == 0 and d.high == 0 and d.p == 1.0 for d in same)
    better = counts(np.minimum(a.correct[0] + 5, 10), n, n_train)
    far = {d.metric: d for d in intervals.paired(better, a, resamples=1000)}
    assert far["few"].diff > 0 and far["few"].low > 0 and far["few"].p == pytest.approx(1 / 1001)
    with pytest.raises(ValueError, match="same test set"):
        intervals.paired(a, counts(a.correct, [11] * 30, n_train))


# --------------------------------------------------------------------------- scipy.stats.bootstrap


def test_class_interval_agrees_with_scipy_bootstrap():
    rng = np.random.default_rng(2)
    correct = rng.integers(0, 21, 80)
    cell = counts(correct, [20] * 80, [FEW] * 80)
    ours = intervals.intervals(cell, resamples=20000, seed=0)["few"]
    theirs = stats.bootstrap((100 * correct / 20,), np.mean, n_resamples=20000, method="percentile",
                             confidence_level=0.95, random_state=np.random.default_rng(0)).confidence_interval
    assert ours == (pytest.approx(theirs.low, abs=0.4), pytest.approx(theirs.high, abs=0.4))


def test_paired_interval_agrees_with_scipy_paired_bootstrap():
    rng = np.random.default_rng(4)
    a_correct, b_correct = rng.integers(0, 11, 60), rng.integers(0, 11, 60)
    a, b = counts(a_correct, [10] * 60, [FEW] * 60), counts(b_correct, [10] * 60, [FEW] * 60)
    few = next(d for d in intervals.paired(a, b, resamples=20000) if d.metric == "few")
    theirs = stats.bootstrap((10 * a_correct, 10 * b_correct), lambda x, y: np.mean(x - y), paired=True,
                             vectorized=False, n_resamples=20000, method="percentile",
                             random_state=np.random.default_rng(1)).confidence_interval
    assert few.diff == pytest.approx(10 * (a_correct.mean() - b_correct.mean()))
    assert (few.low, few.high) == (pytest.approx(theirs.low, abs=0.5), pytest.approx(theirs.high, abs=0.5))


# --------------------------------------------------------------------------- stored counts and the CLI


def test_per_class_results_keep_their_correct_and_test_counts():
    result = compute_metrics([0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 2, 2], [200, 50, 5])
    assert [(r["n_test"], r["n_correct"]) for r in result.per_class] == [(1, 1), (3, 2), (2, 1)]


@pytest.fixture
def synthetic_store(store):
    """Eight synthetic finished runs (ce and focal with three seeds, ldam with two; 30 classes), ingested."""
    from lvmbench import config
    from lvmbench.bench_ingest import make_run
    from lvmbench.store import open_writer
    from lvmbench.store.ingest import ingest_dir

    results, runs = store
    base = config.resolve("imagenet-lt", "ViT-B-16", "ce", data_root="/data/imagenet-lt")
    made = [make_run(runs, i, 8, 30, 2, base) for i in range(8)]
    with open_writer(results) as con:
        ingest_dir(con, runs)
    return results, made


def _cli(*argv) -> tuple[int, str]:
    from lvmbench.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def _files_counts(runs) -> ClassCounts:
    """A cell's counts read back from its runs' own per-class files."""
    return ClassCounts.from_runs([[(r["n_train"], r["n_test"], r["n_correct"])
                                   for r in json.loads(run.per_class_file("test").read_text())] for run in runs])


def test_table_main_ci_shows_the_interval_of_the_runs_per_class_files(synthetic_store):
    results, made = synthetic_store
    code, text = _cli("table", "main", "--ci", "--format", "json", "--results", str(results))
    assert code == 0
    rows = {r["Method"]: r for r in json.loads(text)}
    ce = [run for run in made if run.spec()["method"] == "ce"]
    expected = intervals.intervals(_files_counts(ce))
    assert rows["ce"]["Seeds"] == 3
    for metric in ("overall", "many", "few"):
        column = metric.capitalize()
        assert (rows["ce"][f"{column} ci low"], rows["ce"][f"{column} ci high"]) == pytest.approx(expected[metric])
    code, plain = _cli("table", "main", "--format", "json", "--results", str(results))
    assert "ci low" not in plain


def test_compare_two_methods_and_two_runs(synthetic_store):
    results, made = synthetic_store
    code, text = _cli("compare", "ce", "focal", "--format", "json", "--results", str(results))
    assert code == 0
    rows = {r["Metric"]: r for r in json.loads(text)}
    by = {m: [run for run in made if run.spec()["method"] == m] for m in ("ce", "focal")}
    expected = {d.metric: d for d in intervals.paired(_files_counts(by["ce"]), _files_counts(by["focal"]))}
    assert set(rows) == set(expected)
    for metric, d in expected.items():
        assert rows[metric]["Δ"] == pytest.approx(d.diff) and rows[metric]["p"] == pytest.approx(d.p)
        assert rows[metric]["95 % CI"] == f"[{d.low:.2f}, {d.high:.2f}]"
    a, b = by["ce"][0].run_id, by["focal"][1].run_id
    code, text = _cli("compare", a, b, "--format", "json", "--results", str(results))
    single = intervals.paired(_files_counts(by["ce"][:1]), _files_counts(by["focal"][1:2]))
    assert json.loads(text)[0]["Δ"] == pytest.approx(single[0].diff)


def test_compare_user_errors_are_one_line(synthetic_store, capsys):
    results, _ = synthetic_store
    from lvmbench.cli import main

    assert main(["compare", "ce", "nope", "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no finished run or method named 'nope'" in err[0]
    assert main(["table", "cost", "--ci", "--results", str(results)]) == 2
    assert "--ci applies to table main" in capsys.readouterr().err


def test_ties_with_best_marks_cells_not_significantly_below_the_best(synthetic_store):
    from lvmbench.store import open_readonly
    from lvmbench.store.compare import row_name, ties_with_best
    from lvmbench.store.tables import cells, class_counts

    results, _ = synthetic_store
    with open_readonly(results) as con:
        tied = ties_with_best(con, "imagenet-lt")
        found = cells(con, "imagenet-lt")
        by_label = {row_name(c): c for c in found}
        counts = class_counts(con, found)
    best = max(found, key=lambda c: c.mean("overall"))
    assert row_name(best) in tied
    for label, cell in by_label.items():
        if cell is best:
            continue
        d = next(x for x in intervals.paired(counts[best.group], counts[cell.group]) if x.metric == "overall")
        assert (label in tied) == (d.p >= 0.05), (label, d)
