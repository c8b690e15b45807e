"""Launched children: their command line, state, cancel, and what gets ingested when they end."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from lvmbench.runs.rundir import RunDir
from lvmbench.tui import jobs
from lvmbench.tui.jobs import Job, LaunchRequest


class FakeProc:
    def __init__(self, returncode=None, pid=0):
        self.returncode, self.pid = returncode, pid

    def poll(self):
        return self.returncode


def job_for(tmp_path, returncode=None, launched_at=100.0) -> Job:
    run = RunDir(tmp_path / "runs" / "r1")
    run.path.mkdir(parents=True)
    return Job(LaunchRequest(), run, FakeProc(returncode), launched_at)


def test_command_line_runs_headless_without_ingest_under_the_given_id():
    request = LaunchRequest(dataset="cifar10-lt", backbone="ViT-B-16", method="lws", seed=3, pretrained="openai",
                            data_root="/data/cifar", sets=("train.iters=10", "train.threads=1"))
    assert request.argv("rid", Path("/r/runs"), Path("/r/res.duckdb")) == [
        sys.executable, "-m", "lvmbench", "run", "--headless", "--dataset", "cifar10-lt", "--backbone", "ViT-B-16",
        "--method", "lws", "--seed", "3", "--run-id", "rid", "--no-ingest", "--runs-dir", "/r/runs",
        "--results", "/r/res.duckdb", "--pretrained", "openai", "--data-root", "/data/cifar",
        "--set", "train.iters=10", "train.threads=1"]


def test_defaults_add_no_optional_flags():
    argv = LaunchRequest().argv("rid", Path("runs"), Path("r.duckdb"))
    assert "--pretrained" not in argv and "--data-root" not in argv and "--set" not in argv


def test_state_before_the_run_exists(tmp_path):
    job = job_for(tmp_path)
    assert jobs.state(job) == ("starting", None)
    job.proc.returncode = 2
    job.run.log_file.write_text("loading\nerror: train folder not found: /x/train\n")
    assert jobs.state(job) == ("failed", "train folder not found: /x/train")


def test_state_without_an_error_line_gives_the_exit_code(tmp_path):
    job = job_for(tmp_path, returncode=-9)
    assert jobs.state(job) == ("failed", "lvmbench run exited with code -9")


def test_state_follows_status_json_and_a_dead_child_fails_a_running_run(tmp_path):
    job = job_for(tmp_path)
    job.run.write_status(status="running")
    assert jobs.state(job) == ("running", None)
    job.proc.returncode = 1
    assert jobs.state(job)[0] == "failed"
    job.run.write_status(status="cancelled", error="cancelled by the user")
    assert jobs.state(job) == ("cancelled", "cancelled by the user")


def test_last_error_takes_the_last_error_line():
    assert jobs.last_error("error: first\nmore\nerror: second\n") == "second"
    assert jobs.last_error("Traceback\n  ...\n") is None


def test_runs_to_ingest_are_the_job_and_runs_it_created(tmp_path):
    runs_dir = tmp_path / "runs"
    job = job_for(tmp_path, returncode=0, launched_at=100.0)
    old = RunDir.create(runs_dir, {"dataset": "d", "method": "ce", "seed": 0}, run_id="old")
    old.write_status(status="finished", created_at=50.0)
    stage1 = RunDir.create(runs_dir, {"dataset": "d", "method": "ce", "seed": 0}, run_id="stage1")
    stage1.write_status(status="finished", created_at=120.0)
    busy = RunDir.create(runs_dir, {"dataset": "d", "method": "ce", "seed": 0}, run_id="busy")
    busy.write_status(status="running", created_at=130.0)
    bad_input = RunDir.create(runs_dir, {"dataset": "d", "method": "ce", "seed": 0}, run_id="bad_input")
    bad_input.write_status(status="failed", created_at=130.0, user_error=True)
    RunDir.create(runs_dir, {"dataset": "d", "method": "crt", "seed": 0}, run_id="r1")  # the job's own run
    job.run.write_status(status="finished", created_at=40.0)  # older than the launch: still the job's
    assert sorted(r.run_id for r in jobs.runs_to_ingest(job, runs_dir)) == ["r1", "stage1"]


def _sleeper(tmp_path, ignore_term: bool) -> subprocess.Popen:
    code = "import signal, time\n" + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "") + \
           "print('ready', flush=True)\ntime.sleep(60)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout.readline() == b"ready\n"
    return proc


def test_cancel_terminates_the_process_group(tmp_path):
    job = job_for(tmp_path)
    job.proc = _sleeper(tmp_path, ignore_term=False)
    jobs.cancel(job)
    assert job.proc.wait(timeout=10) < 0 and job.cancel_sent_at is not None
    assert jobs.state(job) == ("cancelled", "cancelled before the run started")


def test_a_child_that_ignores_sigterm_is_killed_and_recorded_cancelled(tmp_path):
    job = job_for(tmp_path)
    job.proc = _sleeper(tmp_path, ignore_term=True)
    job.run.write_status(status="running")
    jobs.cancel(job)
    time.sleep(0.2)
    assert job.proc.poll() is None  # ignored
    assert not jobs.enforce_cancel(job, after_s=60)  # not yet
    assert jobs.enforce_cancel(job, after_s=0)
    assert job.proc.wait(timeout=10) == -9
    assert job.run.status()["status"] == "cancelled"
