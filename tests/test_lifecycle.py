"""A run's life (lvmbench.runs): one writer of status.json, one owner per run, children that die with
a foreground owner, claims that let concurrent sweeps share a grid, costs summed over resumes."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lvmbench import cli, config
from lvmbench.runs import process, scheduler
from lvmbench.runs.plan import prepare
from lvmbench.runs.rundir import RunDir, list_runs
from lvmbench.runs.segments import segment_cost, total_cost

from .conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
# Long enough to be caught training on any machine, never run to the end.
LONG = ["train.iters=100000", "train.batch_size=8", "train.threads=1", "train.eval_every=100000",
        "train.log_every=1", "ckpt.every=1"]


def tiny_run(runs: Path) -> RunDir:
    return prepare(config.resolve("mnist-lt", "tiny-clip", "ce", overrides=config.parse_sets(TINY)), runs)


def lvmbench(*args: str, runs: Path, results: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lvmbench", *args, "--runs-dir", str(runs), "--results",
                             str(results)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})


def wait_for(predicate, timeout: float = 120.0, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] if Path(f"/proc/{pid}").exists() else "X"
    return state == "Z"


# -- one module writes status.json, one module starts and signals processes --------------------------

def test_status_and_processes_are_handled_in_one_module_each():
    sources = [p for d in ("lvmbench", "tui") for p in (ROOT / d).rglob("*.py")]
    writers = {p.relative_to(ROOT).as_posix() for p in sources if re.search(r"\.write_status\(|['\"]status\.json['\"]", p.read_text())}
    assert writers <= {"lvmbench/runs/rundir.py"}, writers
    spawners = {p.relative_to(ROOT).as_posix() for p in sources
                if re.search(r"subprocess\.Popen\(|os\.killpg|os\.kill\(|preexec_fn", p.read_text())}
    assert spawners == {"lvmbench/runs/process.py"}, spawners


# -- cost over resumed segments (#13 item 8) ---------------------------------------------------------

def test_segment_cost_reads_energy_counters_else_power():
    counted = [{"ts": 10.0, "gpu_index": 0, "energy_j": 1000.0, "power_w": 100.0},
               {"ts": 40.0, "gpu_index": 0, "energy_j": 4600.0, "power_w": 120.0}]
    assert segment_cost(counted) == {"wall_s": 30.0, "energy_kwh": 3600.0 / 3.6e6}
    powered = [{"ts": 0.0, "power_w": 100.0}, {"ts": 36.0, "power_w": 300.0}]
    assert segment_cost(powered) == {"wall_s": 36.0, "energy_kwh": 200.0 * 36 / 3.6e6}
    assert segment_cost([{"ts": 1.0, "mem_mib": 5}, {"ts": 3.0}]) == {"wall_s": 2.0, "energy_kwh": None}


def test_total_cost_adds_every_earlier_segment(tmp_path):
    run = tiny_run(tmp_path)
    run.write_status(segment_starts=[100.0, 200.0, 300.0])
    for ts, energy in ((101, 0.0), (131, 3.6e5), (201, 10.0), (211, 10.0 + 3.6e5), (301, 0.0)):
        run.append(run.system_file, {"ts": float(ts), "gpu_index": 0, "energy_j": energy, "power_w": 1.0})
    assert total_cost(run, 5.0, 0.5) == {"wall_s": 45.0, "energy_kwh": pytest.approx(0.7), "segments": 3}


def test_a_resumed_run_counts_the_wall_time_of_its_killed_segment(tmp_path):
    """The finished run's wall_s holds the 40 s its first (killed) segment trained, not only the last."""
    from lvmbench.train.loop import train_run

    run = tiny_run(tmp_path)
    first = time.time() - 100
    run.write_status(status="killed", segment_starts=[first], resumes=1)
    for i in range(5):  # what the killed segment's system monitor left behind
        run.append(run.system_file, {"ts": first + 10 * i, "gpu_index": None, "mem_mib": 1.0, "power_w": None,
                                     "util_pct": None, "energy_j": None})
    status = train_run(run)
    own = status["wall_s"] - 40.0
    assert status["status"] == "finished" and status["segments"] == 2
    assert 0 < own < 100, status["wall_s"]


# -- one live owner per run (#13 item 4) -------------------------------------------------------------

HOLD = "import fcntl, sys, time; f = open(sys.argv[1], 'w'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"


def test_a_second_resume_is_refused_while_the_owner_lives(store, capsys):
    results, runs = store
    run = tiny_run(runs)
    run.mark_killed("killed by SIGKILL")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run.lock_file)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert process.alive(run)
        assert cli.main(["run", "--headless", "--resume", run.run_id]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: run {run.run_id} is still running") and len(err.splitlines()) == 1
        assert run.status()["status"] == "killed" and not results.exists()
    finally:
        holder.kill()
        holder.wait()
    assert not process.alive(run)  # the OS released the lock with its holder
    resumed, owner = scheduler.resumable(runs, run.run_id)
    owner.release()


@pytest.mark.slow
def test_two_resumes_of_one_run_do_not_both_train(store):
    results, runs = store
    run = tiny_run(runs)
    run.mark_killed("killed by SIGKILL")
    first = lvmbench("run", "--headless", "--resume", run.run_id, "--no-ingest", runs=runs, results=results)
    wait_for(lambda: run.status().get("resumes") == 1, what="the first resume")
    second = lvmbench("run", "--headless", "--resume", run.run_id, "--no-ingest", runs=runs, results=results)
    _, err = second.communicate(timeout=300)
    assert second.returncode == 2 and f"run {run.run_id} is still running" in err
    assert first.wait(timeout=300) == 0
    assert run.status()["resumes"] == 1 and run.status()["status"] == "finished"


@pytest.mark.slow
def test_two_sweeps_over_one_grid_train_each_run_once(store, tmp_path):
    results, runs = store
    args = ["sweep", "--method", "ce,focal", "--seed", "0", "--set", *TINY]
    sweeps = [lvmbench(*args, runs=runs, results=tmp_path / f"r{i}.duckdb") for i in range(2)]
    for sweep in sweeps:
        out, err = sweep.communicate(timeout=600)
        assert sweep.returncode == 0, err
    hashes = [r.spec()["config_hash"] for r in list_runs(runs)]
    assert len(hashes) == 2 and len(set(hashes)) == 2, hashes
    assert all(r.state() == "finished" for r in list_runs(runs))


# -- a foreground run owns its child (#13 item 9) ----------------------------------------------------

@pytest.mark.slow
def test_sigkill_of_a_foreground_run_kills_its_child_recorded_killed_and_resumable(store):
    results, runs = store
    parent = lvmbench("run", "--headless", "--no-ingest", "--set", *LONG, runs=runs, results=results)
    run = wait_for(lambda: next((r for r in list_runs(runs) if r.last_step() >= 2), None), what="training")
    child = run.status()["pid"]
    parent.kill()
    parent.wait()
    wait_for(lambda: pid_gone(child), timeout=10, what="the child to die with its parent")
    # a zombie leader's other threads may still hold the descriptor table (and the run's lock) a moment
    wait_for(lambda: not run.lock().held_elsewhere(), timeout=10, what="the child's last thread to exit")
    assert cli.main(["ingest", "--runs-dir", str(runs), "--results", str(results)]) == 0
    status = run.status()
    assert status["status"] == "killed" and status["error"].startswith(f"training process {child} is gone")
    resumed, owner = scheduler.resumable(runs, run.run_id)
    owner.release()


@pytest.mark.slow
def test_cancel_of_a_run_started_elsewhere_is_recorded_cancelled(store):
    results, runs = store
    owner = lvmbench("run", "--headless", "--no-ingest", "--set", *LONG, runs=runs, results=results)
    run = wait_for(lambda: next((r for r in list_runs(runs) if r.last_step() >= 1), None), what="training")
    assert process.request_cancel(run) is None
    assert owner.wait(timeout=60) == 1
    status = run.status()
    assert status["status"] == "cancelled" and status["error"] == "cancelled by the user"
    assert process.request_cancel(run) == f"{run.run_id} is cancelled"
