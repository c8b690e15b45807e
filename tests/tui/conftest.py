"""Fixtures of the UI tests: a results database and run directories with fixed content and times."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from lvmbench.config import DATASET_PROFILES, SCHEMA
from lvmbench.runs.rundir import RunDir, atomic_write_json

OWNERS = {}  # run id -> the owner lock a fixture's running run holds
T0 = 1_700_000_000.0  # fixed timestamps: snapshots must not depend on the clock
COUNTS = [500, 300, 180, 110, 60, 35, 20, 12, 7, 4]  # mnist-lt-like: 4 many, 3 medium, 3 few classes
# method: (overall, many, medium, few, precision, recall, f1, s/iter, peak MiB)
METHODS = {"zeroshot": (61.0, 62.0, 60.5, 60.0, 63.0, 61.0, 60.2, None, 410.0),
           "ce": (88.5, 97.0, 88.0, 76.3, 89.1, 87.9, 88.2, 0.021, 520.0),
           "balanced_softmax": (91.2, 94.5, 91.0, 87.6, 91.0, 91.1, 91.0, 0.022, 522.0),
           "lade": (90.4, 95.0, 90.2, 84.9, 90.5, 90.3, 90.3, 0.024, 530.0),
           "lift": (92.1, 95.5, 92.0, 88.4, 92.2, 92.0, 92.0, 0.031, 610.0),
           "lora": (91.9, 95.2, 91.8, 88.2, 92.0, 91.9, 91.9, 0.030, 600.0)}
FIXTURE_METHODS = ["zeroshot", "ce", "balanced_softmax", "lade"]


def make_spec(method: str, seed: int = 0, iters: int = 300, **changes) -> dict:
    spec = {k: p.default for k, p in SCHEMA.items()}
    spec.update(DATASET_PROFILES["mnist-lt"])
    spec.update({"train.iters": iters, "dataset": "mnist-lt", "backbone": "tiny-clip", "pretrained": "embedded",
                 "method": method, "seed": seed, "data_root": None, "loss": None if method == "zeroshot" else method,
                 "config_hash": f"hash-{method}-{seed}-{iters}", "git_sha": "abc1234", "sweep_id": None})
    spec.update(changes)
    return spec


def make_run(runs_dir: Path, run_id: str, method: str, seed: int = 0, when: float = T0, train_iters: int = 300,
             **status) -> RunDir:
    run = RunDir.create(runs_dir, make_spec(method, seed, train_iters), run_id=run_id)
    run.write_status(created_at=when, **status)
    return run


def finished_run(runs_dir: Path, run_id: str, method: str, when: float, seed: int = 0, iters: int = 300,
                 shift: float = 0.0) -> RunDir:
    """A finished run of ``method`` with its figures of :data:`METHODS` (accuracies ``shift`` points higher)."""
    overall, many, medium, few, p, r, f1, s_iter, peak = (v + shift if i < 7 else v
                                                           for i, v in enumerate(METHODS[method]))
    run = make_run(runs_dir, run_id, method, seed, when=when, train_iters=iters, status="finished", started_at=when + 1,
                   ended_at=when + 61, wall_s=60.0, s_per_iter=s_iter, peak_mem_mib=peak, device="cpu",
                   iters=0 if s_iter is None else iters, trainable_params=64042, total_params=274666,
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
    stored = [finished_run(runs_dir, f"mnist-lt-{m}-s0-fixture", m, T0 + 100 * i)
              for i, m in enumerate(FIXTURE_METHODS)]
    stored.append(make_run(runs_dir, "mnist-lt-focal-s0-fixture", "focal", when=T0 + 500, status="failed",
                           started_at=T0 + 501, ended_at=T0 + 502, error="loss became nan at step 3; lower train.lr"))
    live = running_run(runs_dir)
    with open_writer(results) as con:
        for run in stored:
            ingest_run(con, run)
    yield results, runs_dir
    OWNERS.pop(live.run_id).release()


@pytest.fixture
def busy_store(fixture_store):
    """The fixture store and as many runs again, as a researcher's store looks after a day: ce over three
    seeds, ce at 60 steps (a variant), lift and lora, a run cancelled before its first checkpoint and a
    killed one. The runs of one method look alike but for their run id."""
    from lvmbench.store import open_writer
    from lvmbench.store.ingest import ingest_run

    results, runs_dir = fixture_store
    stored = [finished_run(runs_dir, f"mnist-lt-ce-s{s}-20231114-2{s}0000-c{s}e{s}", "ce", T0 + 600 + s, seed=s,
                           shift=0.4 * s - 0.4) for s in (1, 2)]
    stored += [finished_run(runs_dir, "mnist-lt-ce-s0-20231114-230000-6060", "ce", T0 + 700, iters=60, shift=-3.0),
               finished_run(runs_dir, "mnist-lt-lift-s0-20231114-231000-11f7", "lift", T0 + 800),
               finished_run(runs_dir, "mnist-lt-lora-s0-20231114-232000-10a0", "lora", T0 + 850),
               make_run(runs_dir, "mnist-lt-ldam-s0-20231114-233000-cc01", "ldam", when=T0 + 900, status="cancelled",
                        started_at=T0 + 901, ended_at=T0 + 905, error="cancelled by the user"),
               make_run(runs_dir, "mnist-lt-ce-s3-20231114-234000-dead", "ce", seed=3, when=T0 + 950, status="killed",
                        started_at=T0 + 951, ended_at=T0 + 990, error="the training process vanished")]
    with open_writer(results) as con:
        for run in stored:
            ingest_run(con, run)
    return results, runs_dir


async def settle(pilot) -> None:
    """Let workers answer and their messages be handled (twice: a message may start a worker)."""
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def screen_text(app) -> list[str]:
    """The lines of the terminal as the user sees them now (the characters, without colours)."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, color_system="truecolor",
                      record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens, simplify=True))
    return console.export_text().splitlines()
