"""The Slurm executor: time limits, and a sweep through submitit's local cluster whose runs are
collected from their directories and ingested."""
import json
import subprocess
import sys

import pytest

from lvmbench.errors import UserError
from lvmbench.exec.slurm import parse_time

from .conftest import TINY


@pytest.mark.parametrize("text,minutes", [("90", 90), ("30:00", 30), ("30:30", 31), ("2:00:00", 120),
                                          ("1-00", 1440), ("1-02:30", 1590), ("0-01:00:01", 61)])
def test_parse_slurm_time(text, minutes):
    assert parse_time(text) == minutes


def test_bad_slurm_time_is_one_line():
    with pytest.raises(UserError, match=r"^--slurm-time 1h: expected minutes, HH:MM:SS or D-HH:MM:SS$"):
        parse_time("1h")


@pytest.mark.slow
def test_submitit_local_cluster_runs_a_stage1_then_a_stage2_job_and_ingests_them(store):
    pytest.importorskip("submitit")
    results, runs = store
    out = subprocess.run([sys.executable, "-m", "lvmbench", "sweep", "--executor", "slurm", "--slurm-cluster", "local",
                          "--slurm-gpus-per-job", "0", "--slurm-time", "10", "--method", "ce,crt", "--set", *TINY],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 runs, 2 to start" in out.stdout and "Main results" in out.stdout
    statuses = [json.loads(p.read_text()) for p in runs.glob("*/status.json")]
    assert sorted(s["status"] for s in statuses) == ["finished", "finished"]
    assert all("slurm_job_id" in s for s in statuses)
    q = subprocess.run([sys.executable, "-m", "lvmbench", "sql", "SELECT method, stage FROM runs ORDER BY stage",
                        "--format", "json"], capture_output=True, text=True)
    assert json.loads(q.stdout) == [{"method": "ce", "stage": 1}, {"method": "crt", "stage": 2}]
    # The run directories alone are enough: a fresh database gets the same runs from them.
    fresh = results.with_name("fresh.duckdb")
    again = subprocess.run([sys.executable, "-m", "lvmbench", "ingest", "--results", str(fresh)],
                           capture_output=True, text=True)
    assert again.returncode == 0 and "stored 2 run(s), 0 unchanged" in again.stdout
