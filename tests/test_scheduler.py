"""The one scheduler: Slurm jobs train fused groups bit-identical to their members alone, and every
way of stopping runs (Ctrl-C in ``lvmbench run``, a sweep's abort, the UI's cancel key) takes one
cancel path (``runs.scheduler.cancel``)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from lvmbench import config, runner, sweep
from lvmbench.exec.local import LocalExecutor, Slot
from lvmbench.runs import scheduler
from lvmbench.runs.plan import plan
from lvmbench.runs.rundir import RunDir
from lvmbench.runs.scheduler import Reporter, Scheduler
from lvmbench.train.loop import train_run

from .conftest import TINY, make_run
from .test_fused import assert_same_run

LONG = ["train.iters=100000", "train.batch_size=8", "train.threads=1", "train.eval_every=100000",
        "train.log_every=1"]


@pytest.mark.slow
def test_a_slurm_fused_group_is_bit_identical_to_its_members_alone(tmp_path, random_tiny_clip):
    pytest.importorskip("submitit")
    from lvmbench.exec.slurm import SlurmExecutor, SlurmOptions

    methods = ("ce", "balanced_softmax")
    alone = [make_run(tmp_path / "alone", m, random_tiny_clip) for m in methods]
    for run in alone:
        assert train_run(run)["status"] == "finished"
    runs = tmp_path / "slurm"
    jobs = plan([config.resolve("mnist-lt", "tiny-clip", m, pretrained=random_tiny_clip,
                                overrides=config.parse_sets(TINY)) for m in methods], runs)
    options = SlurmOptions(cluster="local", gpus_per_job=0, time="10", logs=tmp_path / "submitit")
    Scheduler(SlurmExecutor(options, runs), runs, tmp_path / "r.duckdb", interval=0.2).run(jobs)
    group = [job.run for job in jobs]
    statuses = [run.status() for run in group]
    assert [s["status"] for s in statuses] == ["finished", "finished"]
    assert len({s["slurm_job_id"] for s in statuses}) == 1  # one job for the group
    assert {run.spec()["fused_size"] for run in group} == {2} and len({run.spec()["fused_group"] for run in group}) == 1
    for a, b in zip(alone, group):
        assert_same_run(a, b)


class Interrupt(Reporter):
    """Ctrl-C as soon as every started run has logged a step."""

    def __init__(self):
        self.started_jobs = []

    def started(self, job) -> None:
        self.started_jobs.append(job)

    def progress(self, job, step: int) -> None:
        if step > 0:
            raise KeyboardInterrupt


@pytest.fixture
def cancels(monkeypatch):
    """Every call of the one cancel path, with the runs it cancelled (the UI reaches the same function
    through its façade)."""
    from lvmbench import api

    assert api.cancel is scheduler.cancel
    seen = []
    original = scheduler.cancel

    def spy(runs, child=None, why="cancelled by the user"):
        seen.append([r.run_id for r in runs])
        return original(runs, child, why)

    monkeypatch.setattr(scheduler, "cancel", spy)
    monkeypatch.setattr(api, "cancel", spy)
    return seen


def test_ctrl_c_in_lvmbench_run_takes_the_one_cancel_path(store, cancels, monkeypatch):
    results, runs = store
    monkeypatch.setattr(runner, "Bars", lambda rich, label: Interrupt())
    with pytest.raises(KeyboardInterrupt):
        runner.run_headless("mnist-lt", "tiny-clip", "ce", 0, None, None, LONG, runs, results)
    [run_dir] = [p for p in runs.iterdir() if (p / "spec.json").exists()]
    assert cancels == [[run_dir.name]]
    assert (run_dir / "status.json").read_text().count('"cancelled"') == 1


def test_a_sweeps_abort_takes_the_one_cancel_path(store, cancels):
    results, runs = store
    axes = sweep.build_axes(None, methods=["ce", "lade"], sets=config.parse_sets(LONG))
    jobs = plan(sweep.expand(axes), runs)
    with pytest.raises(KeyboardInterrupt):
        Scheduler(LocalExecutor([Slot("a"), Slot("b")]), runs, results, fuse=False, reporter=Interrupt(),
                  interval=0.05).run(jobs)
    assert sorted(map(tuple, cancels)) == sorted((j.run.run_id,) for j in jobs)
    assert {j.state for j in jobs} == {"cancelled"} and {j.run.state() for j in jobs} == {"cancelled"}


@pytest.mark.slow
def test_the_uis_cancel_key_takes_the_one_cancel_path(store, cancels, monkeypatch):
    """The UI's ``c`` sends SIGTERM to its ``lvmbench run`` child, which cancels through its scheduler;
    a child that ignores it is killed and its run recorded through the same path."""
    from lvmbench.tui import jobs

    results, runs = store
    job = jobs.start(jobs.LaunchRequest(sets=tuple(LONG)), runs, results)
    deadline = time.monotonic() + 120
    while job.run.last_step() < 1:
        assert time.monotonic() < deadline and job.proc.poll() is None, job.run.log_tail(5)
        time.sleep(0.05)
    jobs.cancel(job)
    job.proc.wait(timeout=60)
    assert (job.run.state(), job.run.status()["error"]) == ("cancelled", "cancelled by the user")
    job.run.write_status(status="running")  # as if the child had ignored SIGTERM
    monkeypatch.setattr(job.proc, "poll", lambda: None)
    job.cancel_sent_at = time.monotonic() - 100
    assert jobs.enforce_cancel(job, after_s=1)
    assert cancels == [[job.run_id]] and job.run.status()["error"] == "cancelled by the user (killed)"


def test_only_the_scheduler_and_the_training_child_change_a_runs_status():
    root = Path(__file__).resolve().parents[1]
    calls = ("mark_running(", "mark_finished(", "mark_failed(", "mark_killed(", "mark_cancelled(", "reopen(")
    callers = {p.relative_to(root).as_posix() for d in ("lvmbench", "tui") for p in (root / d).rglob("*.py")
               if any("." + c in p.read_text() for c in calls)}
    assert callers <= {"lvmbench/runs/scheduler.py", "lvmbench/train/loop.py", "lvmbench/train/__main__.py",
                       "lvmbench/bench_ingest.py"}, callers


class FakeChild:
    def __init__(self, runs, after):
        self.runs, self.after, self.code = runs, after, None

    def poll(self):
        return self.code

    def stop(self):
        self.code = -15

    def release(self):
        pass

    def lost(self):
        return "the fake job vanished"


class ChainingExecutor:
    """An executor like Slurm's: no slot limit, a stage-2 job may be queued behind its stage-1 job."""

    slots, chains = None, True

    def __init__(self):
        self.launched = []

    def threads(self, slot):
        return 0

    def launch(self, runs, slot, owners, after):
        child = FakeChild(runs, after)
        self.launched.append(child)
        return child


def test_groups_form_once_stage2_chains_behind_stage1_and_no_wait_returns_after_submitting(tmp_path):
    runs = tmp_path / "runs"
    specs = [config.resolve("mnist-lt", "tiny-clip", m, overrides=config.parse_sets(TINY))
             for m in ("ce", "lade", "crt", "marc")]
    executor = ChainingExecutor()
    Scheduler(executor, runs, tmp_path / "r.duckdb", ingest=False, interval=0.01).run(plan(specs, runs), follow=False)
    methods = [[r.spec()["method"] for r in child.runs] for child in executor.launched]
    assert methods == [["ce", "lade"], ["crt"], ["marc"]]  # one fused group; two samplers in stage 2
    first = executor.launched[0]
    assert [c.after for c in executor.launched] == [[], [first], [first]]
    assert {r.spec()["fused_size"] for r in first.runs} == {2}
    assert {r.spec()["stage1.run_id"] for c in executor.launched[1:] for r in c.runs} == {first.runs[0].run_id}
    assert all(r.state() == "queued" for c in executor.launched for r in c.runs)  # submitted, not followed


def test_a_job_that_vanishes_is_failed_with_the_executors_reason_and_blocks_its_dependents(tmp_path):
    runs = tmp_path / "runs"
    specs = [config.resolve("mnist-lt", "tiny-clip", m, overrides=config.parse_sets(TINY)) for m in ("ce", "crt")]
    executor = ChainingExecutor()
    executor.chains = False

    class Ends(Reporter):
        def started(self, job):
            executor.launched[-1].code = 0  # ends at once without its child writing a status

    jobs = plan(specs, runs)
    Scheduler(executor, runs, tmp_path / "r.duckdb", ingest=False, reporter=Ends(), interval=0.01).run(jobs)
    assert [(j.spec["method"], j.state) for j in jobs] == [("ce", "failed"), ("crt", "blocked")]
    assert jobs[0].run.status()["error"] == "the fake job vanished"


@pytest.mark.slow
def test_run_with_a_stage1_method_and_its_stage2_method_trains_the_first_then_the_second(store, random_tiny_clip):
    """``run --method ce,crt``: the asked ce run is crt's stage-1 run (it crashed before the scheduler)."""
    results, runs = store
    status = runner.run_headless("mnist-lt", "tiny-clip", "ce,crt", 0, None, random_tiny_clip, TINY, runs, results,
                                 show=False)
    assert status["status"] == "finished"
    by_method = {RunDir(p).spec()["method"]: RunDir(p) for p in runs.iterdir() if (p / "spec.json").exists()}
    assert sorted(by_method) == ["ce", "crt"] and by_method["ce"].state() == by_method["crt"].state() == "finished"
    assert by_method["crt"].spec()["stage1.run_id"] == by_method["ce"].run_id
