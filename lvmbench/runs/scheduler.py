"""One way to run: the :class:`Scheduler` takes planned jobs and an executor (local processes, Slurm
through submitit; torchrun for ``--nproc``) and starts them in plan order (stage 1 before stage 2),
as fused groups formed by one function (:func:`lvmbench.runs.fused.partition`), follows them, cancels them
(:func:`cancel`, the one cancel path: Ctrl-C, SIGTERM, a sweep's abort, the UI's cancel key) and
ingests each run as it ends. ``lvmbench run`` is a one-cell sweep through it, ``lvmbench sweep`` a grid.

Besides the training child, this module is the only place a run's status changes (parent side):
``queued`` (:func:`prepare`, which creates a run directory; :func:`start_or_continue`), ``cancelled`` (:func:`cancel`), ``killed`` / ``failed`` for a
child that ended without saying (:func:`finalize`), and ``killed`` for a run whose process vanished
(:func:`recover`, the one explicit step; readers use ``process.view``, which writes nothing).
"""
from __future__ import annotations

import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Protocol

from ..errors import UserError, suggest
from .. import config
from .fused import new_group_id, partition
from .plan import PENDING, RUNNING, SKIPPED, Job, block, ready, settle, start_spec, take
from .process import alive, vanished
from .rundir import DONE, INTERRUPTED, Lock, RunDir, check_id_form, list_runs


class Child(Protocol):
    """What an executor's launch returns: a fused group's (or one run's) training job."""

    def poll(self) -> int | None:
        """None while it lives, else its exit code (negative: the signal that ended it)."""

    def stop(self) -> None:
        """Stop it (and wait until it has stopped, where that can be known)."""

    def release(self) -> None:
        """Give back what it held (the runs' owner locks) once it has ended."""

    def lost(self) -> str | None:
        """Why it ended without its runs saying so, when the executor knows better than an exit code."""


class Executor(Protocol):
    """Where children run: ``slots`` (None: no limit), each busy while its child lives."""

    slots: list | None
    chains: bool  # it can start a stage-2 job before its stage-1 job ends (Slurm dependencies)
    spread: bool  # a free slot is an idle device: fused groups are split so that every free slot gets work

    def threads(self, slot) -> int:
        """``train.threads`` for a child in ``slot`` that did not set it (0: torch's default)."""

    def take_slot(self, free: list):
        """A slot of ``free`` to start in, taken out of it (None: none can be used now)."""

    def put_back(self, slot, free: list) -> None:
        """Return a slot taken but not launched in to ``free``."""

    def launch(self, runs: list[RunDir], slot, owners: list[Lock | None], after: list[Child]) -> Child:
        """Start the training of ``runs`` (a fused group when several) in ``slot``, after ``after``."""


class Reporter:
    """What the scheduler tells its caller; the default says nothing."""

    def started(self, job: Job) -> None: ...

    def progress(self, job: Job, step: int) -> None: ...

    def settled(self, job: Job) -> None: ...

    def waiting(self, job: Job) -> None:
        """Another process trains the same configuration; this one waits for it."""


# -- transitions on the parent side ------------------------------------------------------------------

def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def prepare(spec: dict, runs_dir: Path, sweep_id: str | None = None, run_id: str | None = None,
            fused_group: str | None = None, fused_size: int = 1) -> RunDir:
    """Create the run directory (status ``queued``) with the full resolved spec (and, for a member
    of a fused group, the group's id and size)."""
    spec = {**spec, "config_hash": config.config_hash(spec), "result_group": config.result_group(spec),
            "git_sha": git_sha(), "sweep_id": sweep_id}
    if fused_group:
        spec.update(fused_group=fused_group, fused_size=fused_size)
    return RunDir.create(Path(runs_dir), spec, run_id=run_id)


def prepare_group(specs: list[dict], runs_dir: Path, sweep_id: str | None = None) -> list[RunDir]:
    """The run directories of specs that train together (one fused group; one spec: a plain run)."""
    group = new_group_id() if len(specs) > 1 else None
    return [prepare(s, runs_dir, sweep_id, fused_group=group, fused_size=len(specs)) for s in specs]


def start_or_continue(run: RunDir | None, spec: dict, runs_dir: Path, sweep_id: str | None = None,
                      run_id: str | None = None) -> RunDir:
    """A job's run directory: the interrupted run it continues (recorded ``killed`` first if its
    process vanished, then reopened), else a new one."""
    if run is not None:
        recover(run)
        run.reopen()
        return run
    return prepare(spec, runs_dir, sweep_id, run_id=run_id)


def finalize(run: RunDir, returncode: int | None, lost: str | None = None) -> dict:
    """Give a run whose child ended without a final status one: ``cancelled`` when someone asked for
    it, ``killed`` by another signal, else ``failed`` (``lost``: why, when the executor knows)."""
    status = run.status()
    if status.get("status") in DONE:
        return status
    if run.cancel_file.exists():  # asked for, whatever the exit code (torchrun exits 1 when its workers are stopped)
        return run.mark_cancelled()
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        return run.mark_killed(f"killed by {name}")
    return run.mark_failed(lost or f"child exited with code {returncode}")


def reap(runs: list[RunDir], child: Child) -> list[dict]:
    """After a child has ended: each of its runs' final status; what it held goes back."""
    statuses = [finalize(run, child.poll(), child.lost()) for run in runs]
    child.release()
    return statuses


def cancel(runs: list[RunDir], child: Child | None = None, why: str = "cancelled by the user") -> list[dict]:
    """The one cancel path: stop the child (when this process holds it) and record ``cancelled``
    each of its runs that had not ended."""
    if child is not None:
        child.stop()
    statuses = [run.status() if run.state() in DONE else run.mark_cancelled(why) for run in runs]
    if child is not None:
        child.release()
    return statuses


def preempted(run: RunDir) -> dict:
    """A Slurm job stopped by preemption or its time limit: killed, and requeued to continue."""
    return run.mark_killed("preempted or out of time on Slurm: requeued")


def recover(run: RunDir) -> dict:
    """A run left ``running`` whose process is gone (its owner died, the machine rebooted) is killed."""
    status = run.status()
    why = vanished(run, status)
    return run.mark_killed(why) if why else status


def recover_all(runs: list[RunDir]) -> None:
    for run in runs:
        recover(run)


def group_members(runs_dir: Path, run: RunDir) -> list[RunDir]:
    """``run`` and the other runs of its fused group that ended as it did (killed, failed or cancelled):
    what a resume continues together."""
    spec = run.spec_or_none() or {}
    group, state = spec.get("fused_group"), run.state()
    if not group:
        return [run]
    others = [r for r in list_runs(runs_dir) if r.run_id != run.run_id
              and (r.spec_or_none() or {}).get("fused_group") == group and recover(r).get("status") == state]
    return [run, *others]


def resumable(runs_dir: Path, run_id: str) -> tuple[RunDir, Lock]:
    """The run ``run_id``, checked to be one that can continue (failed, killed or cancelled), and its
    owner lock, now held by this process: a second ``--resume`` of it is refused while this one runs."""
    check_id_form(run_id, "--resume")
    run = RunDir(Path(runs_dir) / run_id)
    if not run.exists():
        ids = [r.run_id for r in list_runs(runs_dir)]
        raise UserError(f"no run {run_id} in {runs_dir}{suggest(run_id, ids)}")
    damaged = run.unreadable()
    if damaged:
        raise UserError(f"run {run_id} cannot be resumed: {damaged}")
    status = recover(run)
    state = status.get("status")
    if state == "finished":
        raise UserError(f"run {run_id} already finished; nothing to resume")
    lock = run.lock()
    if state == "running" or not lock.acquire() or (state == "queued" and alive(run, status)):
        lock.release()
        raise UserError(f"run {run_id} is still running (pid {status.get('pid')}); cancel it first")
    return run, lock


def run_on_node(runs: list[RunDir], spawn) -> list[dict]:
    """What a Slurm job does on its node: continue interrupted runs (a requeued job), train the group
    with ``spawn(runs) -> Child``, give each run its final status."""
    for run in runs:
        if recover(run).get("status") in INTERRUPTED:
            run.reopen()
    child = spawn(runs)
    while child.poll() is None:
        time.sleep(1.0)
    return reap(runs, child)


# -- the scheduler -----------------------------------------------------------------------------------

class Scheduler:
    """Start planned jobs on an executor, follow them, cancel them, ingest what ends.

    ``ingest=False`` leaves the database to the caller (the UI); ``fuse=False`` trains every run
    alone; ``fresh`` (``lvmbench run``) starts the asked-for runs without a claim, even where another
    process trains or trained the same configuration (their stage-1 runs are still shared);
    ``follow=False`` (Slurm ``--no-wait``) returns once everything is submitted."""

    def __init__(self, executor: Executor, runs_dir: Path, results: Path, *, sweep_id: str | None = None,
                 fuse: bool = True, ingest: bool = True, reporter: Reporter | None = None,
                 interval: float = 0.5, fresh: bool = False):
        self.executor, self.runs_dir, self.results, self.fresh = executor, Path(runs_dir), Path(results), fresh
        self.sweep_id, self.fuse, self.ingest, self.interval = sweep_id, fuse, ingest, interval
        self.reporter = reporter or Reporter()
        self.running: list[tuple[Child, object, list[Job]]] = []
        self.not_stored: dict[str, str] = {}  # run id -> why a finished run could not be stored

    def run(self, jobs: list[Job], follow: bool = True) -> None:
        """Start each pending job when a slot is free, its stage-1 job is done and this process holds
        its claim; follow them until every job has settled. Any exception (Ctrl-C, SIGTERM, a crash)
        cancels what runs: no orphans."""
        by_hash = {j.hash: j for j in jobs}
        free = None if self.executor.slots is None else list(self.executor.slots)
        told = set()
        try:
            while True:
                free = self._start(jobs, by_hash, free, told)
                if not any(j.state == PENDING for j in jobs) and not (follow and self.running):
                    return
                time.sleep(self.interval)
                free = self._follow(free)
        except BaseException:
            self.cancel()
            raise

    def cancel(self, why: str = "cancelled by the user") -> None:
        """Stop every child this scheduler started and record its unfinished runs ``cancelled``."""
        running, self.running = self.running, []
        for child, _, group in running:
            for job, status in zip(group, cancel([j.run for j in group], child, why)):
                settle(job, status)
            self._ingest([j.run for j in group])

    def _startable(self, job: Job, by_hash: dict[str, Job]) -> bool:
        can = ready(job, by_hash)
        return bool(can) or (can is False and self.executor.chains and by_hash[job.needs].state == RUNNING)

    def _start(self, jobs: list[Job], by_hash: dict[str, Job], free: list | None, told: set) -> list | None:
        startable = [j for j in jobs if j.state == PENDING and self._startable(j, by_hash)]
        spread = len(free) if free is not None and self.executor.spread else None
        for group in self._groups(startable, by_hash, spread):
            slot = None
            if free is not None and (slot := self.executor.take_slot(free)) is None:
                break
            taken = self._take(group, told)
            if not taken:
                if free is not None:
                    self.executor.put_back(slot, free)
                continue
            self._launch(taken, by_hash, slot)
        for job in jobs:
            if job.state == PENDING and ready(job, by_hash) is None:
                block(job, by_hash)
                self.reporter.settled(job)
        return free

    def _groups(self, startable: list[Job], by_hash: dict[str, Job], free_slots: int | None = None) -> list[list[Job]]:
        """Jobs that continue a run go with the rest of its fused group; new ones are grouped by
        :func:`lvmbench.runs.fused.partition` (split over ``free_slots`` when given)."""
        continuing: dict[str, list[Job]] = defaultdict(list)
        for job in (j for j in startable if j.run is not None):
            continuing[(job.run.spec_or_none() or {}).get("fused_group") or job.run.run_id].append(job)
        new = [j for j in startable if j.run is None]
        specs = [start_spec(j, by_hash) for j in new]
        groups = partition(specs, self.fuse and len(new) > 1, free_slots)
        return [*continuing.values(), *([new[i] for i in g] for g in groups)]

    def _take(self, group: list[Job], told: set) -> list[Job]:
        """The jobs of ``group`` this process may start (it holds their claims); jobs another process
        finished meanwhile are skipped (and stored), jobs it trains now wait."""
        taken = []
        for job in group:
            if job.owner is not None or (self.fresh and not job.implicit) or take(job, self.runs_dir):
                if job.state == SKIPPED:
                    self._ingest([job.run])
                    self.reporter.settled(job)
                else:
                    taken.append(job)
            elif job.hash not in told:
                told.add(job.hash)
                self.reporter.waiting(job)
        return taken

    def _launch(self, group: list[Job], by_hash: dict[str, Job], slot) -> None:
        threads = self.executor.threads(slot)
        specs = [start_spec(j, by_hash, threads) for j in group]
        if group[0].run is not None:
            runs = [start_or_continue(j.run, s, self.runs_dir) for j, s in zip(group, specs)]
        elif len(group) == 1:
            runs = [start_or_continue(None, specs[0], self.runs_dir, self.sweep_id, group[0].run_id)]
        else:
            runs = prepare_group(specs, self.runs_dir, self.sweep_id)
        if not self.ingest:  # the caller stores them (the UI; a UI started later finds and stores them too)
            for run in runs:
                run.note(stored_by="caller")
        after = [c for c, _, g in self.running if any(j.hash in {x.needs for x in group} for j in g)]
        child = self.executor.launch(runs, slot, [j.owner for j in group], after)
        for job, run in zip(group, runs):
            job.run, job.state, job.owner = run, RUNNING, None
            self.reporter.started(job)
        self.running.append((child, slot, group))

    def _follow(self, free: list | None) -> list | None:
        for entry in list(self.running):
            child, slot, group = entry
            for job in group:
                self.reporter.progress(job, job.run.last_step())
            if child.poll() is None:
                continue
            self.running.remove(entry)
            for job, status in zip(group, reap([j.run for j in group], child)):
                settle(job, status)
            self._ingest([j.run for j in group])
            for job in group:
                self.reporter.settled(job)
            if free is not None:
                free.append(slot)
        return free

    def _ingest(self, runs: list[RunDir]) -> None:
        """Store what ended, each run on its own (a run that failed on bad input holds no result)."""
        if not self.ingest:
            return
        for run in runs:
            if not run.status().get("user_error"):
                why = ingest_quietly(self.results, run)
                if why:
                    self.not_stored[run.run_id] = why


def ingest_quietly(results: Path, *runs: RunDir) -> str | None:
    """Ingest runs; a database that cannot be opened or written costs nothing (the run directories
    stay): warn, and return why the last of ``runs`` was not stored (None once it is)."""
    from rich.console import Console
    from rich.markup import escape

    from ..store import open_writer, pending
    from ..store.ingest import ingest_runs

    if not runs:
        return None
    try:
        with open_writer(results) as con:
            # a bad run never keeps the others out; runs that found the database busy come along
            skipped = ingest_runs(con, [*pending.waiting(results), *runs]).skipped
        pending.clear(results)
    except (UserError, OSError) as exc:
        pending.remember(results, runs)
        where = runs[0].path if len(runs) == 1 else runs[0].path.parent
        skipped = [(where, str(exc))]
        hint = f"the next run stored in {results} stores it too; or later: lvmbench ingest {where} --results {results}"
    else:
        hint = None
    for where, why in skipped:
        Console(stderr=True).print("[yellow]warning:[/] " + escape(
            f"kept in {where} but not stored: {why} ({hint or f'later: lvmbench ingest {where} --results {results}'})"),
            soft_wrap=True)
    last = runs[-1].path
    return next((why for where, why in skipped if Path(where) in (last, last.parent)), None)
