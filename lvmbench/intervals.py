"""Bootstrap confidence intervals and paired comparisons of long-tailed test accuracy (torch-free).

The unit is the test class: many / medium / few are means of per-class accuracies over the classes of
a shot group, so an interval resamples classes with replacement *within each shot group* (the group
sizes stay those of the test set), and, when a cell averages several seeds, the seeds too (a two-level
bootstrap: the class draw and the seed draw are independent, and the same class draw applies to every
seed, since the seeds share one test set). Overall accuracy is recomputed on the same draw as the
images of the drawn classes, correct over total. What a run keeps for this is its per-class counts on
the test split (``n_test``, ``n_correct``: the diagonal and row sums of its confusion matrix), enough
for every statistic here.

A paired comparison of two cells on one test set draws the classes once for both (the pairing) and
each side's seeds apart; its p-value is two-sided, from the bootstrap distribution of the difference
centred at zero. Intervals are percentile intervals; every draw comes from a seeded generator, so
results are reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

METRICS = ("overall", "many", "medium", "few")
GROUPS = ("many", "medium", "few")
RESAMPLES = 2000
LEVEL = 0.95


@dataclass
class ClassCounts:
    """One cell's test results per present class: ``correct[s, c]`` of ``n[c]`` images, seed ``s``;
    ``groups[c]`` is the class's shot group (from its training count)."""

    correct: np.ndarray
    n: np.ndarray
    groups: np.ndarray

    @classmethod
    def from_runs(cls, runs: list[list[tuple[int, int, int]]]) -> "ClassCounts":
        """From each seed's ``(n_train, n_test, n_correct)`` per class (every seed lists the same classes);
        classes without test images are left out, as the metrics leave them out."""
        from .evaluate import shot_groups

        first = np.asarray(runs[0], dtype=np.int64)
        for other in runs[1:]:
            if len(other) != len(first) or not np.array_equal(np.asarray(other)[:, :2], first[:, :2]):
                raise ValueError("the seeds of a cell were tested on different classes or test sets")
        present = first[:, 1] > 0
        correct = np.asarray([np.asarray(r)[present, 2] for r in runs], dtype=np.float64)
        return cls(correct, first[present, 1].astype(np.float64), shot_groups(first[present, 0]))

    @property
    def seeds(self) -> int:
        return len(self.correct)


@lru_cache(maxsize=4)
def _class_draws(groups: tuple[str, ...], draws: int, seed: int) -> dict[str, np.ndarray]:
    """Per shot group, ``[draws, classes of the group]`` multiplicities: the group's classes drawn with
    replacement, as many as it has. They depend on the classes' groups alone, so every cell of one test set
    shares them (drawn once)."""
    rng = np.random.default_rng([seed, 0])
    labels = np.asarray(groups)
    out = {}
    for g in GROUPS:
        m = int(np.count_nonzero(labels == g))
        if m:
            out[g] = rng.multinomial(m, np.full(m, 1 / m), size=draws).astype(np.float64)
            out[g].flags.writeable = False
    return out


def _seed_draws(rng: np.random.Generator, seeds: int, draws: int) -> np.ndarray:
    """``[draws, S]`` weights: the seeds drawn with replacement, as fractions (one seed: always 1)."""
    if seeds == 1:
        return np.ones((draws, 1))
    return rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=draws) / seeds


def _metrics(counts: ClassCounts, k: dict[str, np.ndarray], w: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric under the class multiplicities ``k`` (per group, [B, classes of the group]) and the seed
    weights ``w`` [B, S]: for each draw, the seed-weighted mean of each seed's figure on the drawn classes."""
    right, seen, out = 0.0, 0.0, {}
    for g in GROUPS:
        members = counts.groups == g
        if g not in k:
            out[g] = None
            continue
        correct, n = counts.correct[:, members], counts.n[members]
        right = right + (w * (k[g] @ correct.T)).sum(1)
        seen = seen + k[g] @ n
        out[g] = 100.0 * (w * (k[g] @ (correct / n).T)).sum(1) / members.sum()
    out["overall"] = 100.0 * right / seen
    return {m: out[m] for m in METRICS}


def estimate(counts: ClassCounts) -> dict[str, float | None]:
    """The metrics the tables show (the mean over seeds), from the counts."""
    once = {g: np.ones((1, int(np.count_nonzero(counts.groups == g)))) for g in GROUPS if (counts.groups == g).any()}
    values = _metrics(counts, once, np.full((1, counts.seeds), 1 / counts.seeds))
    return {m: None if v is None else float(v[0]) for m, v in values.items()}


def _bootstrap(sides: list[ClassCounts], resamples: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Each side's metrics over ``resamples`` draws; the sides share the class draw (paired), each draws its
    own seeds."""
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency

    k = _class_draws(tuple(sides[0].groups.tolist()), resamples, seed)
    out = []
    with threadpool_limits(1, user_api="blas"):  # small products: BLAS threads would spin, not help (6x the CPU)
        for i, side in enumerate(sides, 1):
            w = _seed_draws(np.random.default_rng([seed, i]), side.seeds, resamples)
            out.append(_metrics(side, k, w))
    return out


def _percentile(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def intervals(counts: ClassCounts, resamples: int = RESAMPLES, seed: int = 0,
              level: float = LEVEL) -> dict[str, tuple[float, float] | None]:
    """A ``level`` percentile interval of each metric (None for a shot group without classes)."""
    (values,) = _bootstrap([counts], resamples, seed)
    return {m: None if v is None else _percentile(v, level) for m, v in values.items()}


@dataclass
class Difference:
    """``a - b`` of one metric: the point difference, its interval and the two-sided p-value."""

    metric: str
    a: float
    b: float
    diff: float
    low: float
    high: float
    p: float


def paired(a: ClassCounts, b: ClassCounts, resamples: int = RESAMPLES, seed: int = 0,
           level: float = LEVEL) -> list[Difference]:
    """The paired bootstrap comparison of two cells tested on the same classes (same test counts)."""
    if not (np.array_equal(a.n, b.n) and np.array_equal(a.groups, b.groups)):
        raise ValueError("the two were not tested on the same test set (their per-class test counts differ)")
    est_a, est_b = estimate(a), estimate(b)
    boot_a, boot_b = _bootstrap([a, b], resamples, seed)
    out = []
    for m in METRICS:
        if est_a[m] is None:
            continue
        d = est_a[m] - est_b[m]
        deltas = boot_a[m] - boot_b[m]
        low, high = _percentile(deltas, level)
        extreme = np.count_nonzero(np.abs(deltas - d) >= abs(d) - 1e-12)  # the null: the draws centred at 0
        out.append(Difference(m, est_a[m], est_b[m], d, low, high, (1 + extreme) / (1 + resamples)))
    return out
