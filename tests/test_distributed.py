"""Data-parallel runs: each rank's slice of the global batch, and a torchrun run with 2 CPU
processes (gloo) that trains like 1 process on the same global batches."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from lvmbench.runs import process
from lvmbench.runs.scheduler import prepare
from lvmbench.train.batches import StepBatchSampler

from .conftest import TINY


@pytest.mark.parametrize("kind", ["instance", "balanced"])
def test_ranks_split_the_same_global_batch(kind):
    labels = np.repeat(np.arange(5), [40, 20, 8, 4, 2])
    whole = StepBatchSampler(labels, 12, kind, seed=3, steps=9)
    ranks = [list(StepBatchSampler(labels, 12, kind, seed=3, steps=9, rank=r, world=3)) for r in range(3)]
    for step, batch in enumerate(whole):
        parts = [ranks[r][step] for r in range(3)]
        assert [len(p) for p in parts] == [4, 4, 4]
        assert sorted(x for p in parts for x in p) == sorted(batch)  # same (index, augmentation seed) pairs


def test_nproc_runs_through_torchrun(tmp_path):
    run = prepare({"dataset": "mnist-lt", "method": "ce", "seed": 0}, tmp_path)
    assert process.child_command(run)[1:] == ["-m", "lvmbench.train", str(run.path)]
    cmd = process.child_command(run, nproc=2)
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    assert cmd[5:] == ["-m", "lvmbench.train", str(run.path)]


def _run(nproc, runs):
    out = subprocess.run([sys.executable, "-m", "lvmbench", "run", "--headless", "--nproc", str(nproc),
                          "--runs-dir", str(runs), "--set", *TINY], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    (run,) = runs.iterdir()
    return run


@pytest.mark.slow
def test_two_gloo_processes_train_like_one(store, tmp_path):
    one, two = _run(1, tmp_path / "one"), _run(2, tmp_path / "two")
    losses = [[r["loss"] for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
              for d in (one, two)]
    assert len(losses[0]) == 3 and np.allclose(losses[0], losses[1], rtol=1e-4)
    a, b = (torch.load(d / "ckpt" / "model.pt", weights_only=True) for d in (one, two))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key
    ev = [json.loads((d / "eval" / "test.json").read_text()) for d in (one, two)]
    assert abs(ev[0]["overall"] - ev[1]["overall"]) <= 0.5
    # Only rank 0 wrote the run directory: one status, one line per logged step.
    status = json.loads((two / "status.json").read_text())
    assert status["status"] == "finished" and len(losses[1]) == 3
