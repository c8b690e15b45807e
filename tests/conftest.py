"""Shared test fixtures: tiny training budgets and isolated results/runs locations."""
from __future__ import annotations

import os

import pytest

# The suite never touches a GPU, whatever the machine has (set before torch is imported; children inherit it).
os.environ["CUDA_VISIBLE_DEVICES"] = ""

from lvmbench import config
from lvmbench.runs.rundir import TIMING_KEYS, RunDir
from lvmbench.runs.scheduler import prepare

# A budget that exercises every code path of a run in a few seconds on a CPU.
TINY = ["train.iters=6", "train.batch_size=16", "train.eval_every=3", "train.warmup_iters=2",
        "train.log_every=2", "train.threads=1"]


def tiny(*changes: str) -> list[str]:
    """TINY with some of its settings changed or added (``--set`` takes each key once)."""
    given = {c.split("=", 1)[0] for c in changes}
    return [s for s in TINY if s.split("=", 1)[0] not in given] + list(changes)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """Results database and runs directory under tmp_path (also via the environment variables)."""
    results, runs = tmp_path / "results.duckdb", tmp_path / "runs"
    monkeypatch.setenv("LVMBENCH_RESULTS", str(results))
    monkeypatch.setenv("LVMBENCH_RUNS", str(runs))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return results, runs


@pytest.fixture(autouse=True, scope="session")
def feature_cache(tmp_path_factory):
    """Frozen-encoder features go to a temporary cache that the whole session shares (its keys are
    content hashes, so sharing is safe); a test that counts encoder calls sets its own."""
    import os

    before = os.environ.get("LVMBENCH_CACHE")
    os.environ["LVMBENCH_CACHE"] = str(tmp_path_factory.mktemp("feature-cache"))
    yield os.environ["LVMBENCH_CACHE"]
    if before is None:
        os.environ.pop("LVMBENCH_CACHE", None)
    else:
        os.environ["LVMBENCH_CACHE"] = before


@pytest.fixture(scope="session")
def random_tiny_clip(tmp_path_factory):
    """A randomly initialised tiny-clip checkpoint: the engine's mechanics do not need trained weights."""
    import open_clip
    import torch

    from lvmbench.models import tiny_clip

    tiny_clip.register()
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny-random.pt"
    torch.save(open_clip.create_model("tiny-clip").state_dict(), path)
    return str(path)


def trained_metrics(run: RunDir) -> dict:
    """``{(step, key): value}`` of a run's logged metrics, its timing keys left out: what training
    computed, which runs that train alike share bit for bit (the last record of a step wins)."""
    return {(m["step"], k): v for m in run.metrics() for k, v in m.items() if k not in ("step", *TIMING_KEYS)}


def make_run(runs, method, ckpt, **extra):
    """A prepared run of ``method`` on mnist-lt / tiny-clip (weights ``ckpt``) at the TINY budget."""
    overrides = {**config.parse_sets(TINY), **extra}
    spec = config.resolve("mnist-lt", "tiny-clip", method, pretrained=ckpt, overrides=overrides)
    return prepare(spec, runs)


def finish(runs, spec, overall=50.0, **status):
    """A prepared run of ``spec`` recorded as finished, with a test evaluation (its other figures fixed)."""
    import json

    run = prepare(spec, runs)
    run.write_status(status="finished", started_at=1_700_000_000, ended_at=1_700_000_100, stage=1, wall_s=60.0,
                     s_per_iter=0.008251, device="cpu", **status)
    (run.eval_dir / "test.json").write_text(json.dumps(
        {"split": "test", "overall": overall, "many": 80.0, "medium": 70.0, "few": 60.0, "precision": 71.0,
         "recall": 72.0, "f1": 73.0, "worst_class": 1.0, "n_samples": 10}))
    return run
