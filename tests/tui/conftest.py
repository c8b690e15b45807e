"""Fixtures of the UI tests: a results database and run directories with fixed content and times."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from lvmbench.catalog import dataset
from lvmbench.config import SCHEMA
from lvmbench.runs.rundir import RunDir, atomic_write_json

OWNERS = {}  # run id -> the owner lock a fixture's running run holds
T0 = 1_700_000_000.0  # fixed timestamps: snapshots must not depend on the clock
COUNTS = [500, 300, 180, 110, 60, 35, 20, 12, 7, 4]  # mnist-lt-like: 4 many, 3 medium, 3 few classes
# method: (overall, many, medium, few, precision, recall, f1, s/iter, peak MiB)
METHODS = {"zeroshot": (61.0, 62.0, 60.5, 60.0, 63.0, 61.0, 60.2, None, 410.0),
           "ce": (88.5, 97.0, 88.0, 76.3, 89.1, 87.9, 88.2, 0.021, 520.0),
           "balanced_softmax": (91.2, 94.5, 91.0, 87.6, 91.0, 91.1, 91.0, 0.022, 522.0),
           "lade": (90.4, 95.0, 90.2, 84.9, 90.5, 90.3, 90.3, 0.024, 530.0)}


def make_spec(method: str, seed: int = 0, iters: int = 300) -> dict:
    spec = {k: p.default for k, p in SCHEMA.items()}
    spec.update(dataset("mnist-lt").defaults)
    spec.update({"train.iters": iters, "dataset": "mnist-lt", "backbone": "tiny-clip", "pretrained": "embedded",
                 "method": method, "seed": seed, "data_root": None, "loss": None if method == "zeroshot" else method,
                 "config_hash": f"hash-{method}-{seed}", "git_sha": "abc1234", "sweep_id": None})
    return spec


def make_run(runs_dir: Path, run_id: str, method: str, seed: int = 0, when: float = T0, **status) -> RunDir:
    run = RunDir.create(runs_dir, make_spec(method, seed), run_id=run_id)
    run.write_status(created_at=when, **status)
    return run


def finished_run(runs_dir: Path, run_id: str, method: str, when: float) -> RunDir:
    overall, many, medium, few, p, r, f1, s_iter, peak = METHODS[method]
    run = make_run(runs_dir, run_id, method, when=when, status="finished", started_at=when + 1,
                   ended_at=when + 61, wall_s=60.0, s_per_iter=s_iter, peak_mem_mib=peak, device="cpu",
                   iters=0 if s_iter is None else 300, trainable_params=64042, total_params=274666,
                   avg_power_w=None, energy_kwh=None, stage=1)
    for split in ("val", "test"):
        atomic_write_json(run.eval_dir / f"{split}.json", {
            "split": split, "overall": overall, "many": many, "medium": medium, "few": few, "precision": p,
            "recall": r, "f1": f1, "worst_class": few - 10, "n_samples": 1000})
        atomic_write_json(run.eval_dir / f"per_class_{split}.json", [
            {"class_id": c, "class_name": str(c), "n_train": n,
             "accuracy": many if n > 100 else (few if n < 20 else medium)} for c, n in enumerate(COUNTS)])
    return run


def running_run(runs_dir: Path, run_id: str = "mnist-lt-ce-s1-live") -> RunDir:
    """A run half-way through 300 steps: 150 steps at 0.1 s/step, val at step 100, CPU memory. Its
    owner lock is held (``OWNERS[run_id]``) as a live training process's would be: release it to end it."""
    run = make_run(runs_dir, run_id, "ce", seed=1, when=T0 + 1000, status="running", started_at=T0 + 1001)
    OWNERS[run_id] = run.lock()
    OWNERS[run_id].acquire()
    for step in range(10, 151, 10):
        lr = 0.03 * min(1.0, step / 30) * (0.5 + 0.5 * math.cos(math.pi * step / 300))
        run.append(run.metrics_file, {"step": step, "loss": 2.3 * math.exp(-step / 60) + 0.2, "lr": lr,
                                      "ts": T0 + 1001 + step * 0.1})
        if step == 100:
            run.append(run.metrics_file, {"step": 100, "val/overall": 72.5, "val/few": 41.0, "ts": T0 + 1012})
    for i in range(8):
        run.append(run.system_file, {"ts": T0 + 1001 + 2 * i, "gpu_index": None, "mem_mib": 800 + 20 * i,
                                     "power_w": None, "util_pct": None, "energy_j": None})
    with open(run.log_file, "a") as f:
        f.writelines(f"step {s}/300 loss {2.3 * math.exp(-s / 60) + 0.2:.4f}\n" for s in range(10, 151, 10))
    return run


@pytest.fixture
def fixture_store(tmp_path, monkeypatch):
    """Relative paths (stable on screen) to a database of four finished runs and a failed one, and a
    runs directory that also holds one running run."""
    from lvmbench.store import open_writer
    from lvmbench.store.ingest import ingest_run

    monkeypatch.chdir(tmp_path)
    results, runs_dir = Path("results/results.duckdb"), Path("runs")
    stored = [finished_run(runs_dir, f"mnist-lt-{m}-s0-fixture", m, T0 + 100 * i) for i, m in enumerate(METHODS)]
    stored.append(make_run(runs_dir, "mnist-lt-focal-s0-fixture", "focal", when=T0 + 500, status="failed",
                           started_at=T0 + 501, ended_at=T0 + 502, error="loss became nan at step 3; lower train.lr"))
    live = running_run(runs_dir)
    with open_writer(results) as con:
        for run in stored:
            ingest_run(con, run)
    yield results, runs_dir
    OWNERS.pop(live.run_id).release()


async def settle(pilot) -> None:
    """Let workers answer and their messages be handled (twice: a message may start a worker)."""
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()
