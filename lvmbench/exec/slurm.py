"""Slurm executor through submitit (``pip install lvmbench[slurm]``): a sweep's runs as job arrays.

The parent prepares every run directory on the shared filesystem, then submits one array of
stage-1 and one-stage runs and, depending on it (``afterany``), one array of two-stage runs.
Each array task runs the ordinary training child; run directories are the only channel back,
collected by ``lvmbench ingest`` (or by this process with ``--wait``). submitit's ``local``
cluster runs the same arrays as local processes, the second after the first has ended.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..runs import devices, process
from ..runs.plan import PENDING, RUNNING, Job, block, ready, start_or_continue, start_spec
from ..runs.rundir import DONE, INTERRUPTED, RunDir
from .local import Reporter

CLUSTERS = ("slurm", "local", "debug")


class RunJob:
    """What one array task runs: the training child of a prepared run directory (through torchrun
    when the task has several GPUs); returns the run's final status.

    Checkpointable in submitit's sense: when Slurm preempts the job or its time runs out, submitit
    calls :meth:`checkpoint`, which stops the child (its run keeps ``ckpt/last.pt``, written every
    ``ckpt.every`` steps) and hands submitit the same task to requeue; the requeued task continues
    the run in its directory from that checkpoint.

    ``visible``: on submitit's ``local`` and ``debug`` clusters, which run tasks on this machine, the
    ``CUDA_VISIBLE_DEVICES`` of the submitting process (None: unset). submitit's local cluster gives
    every task ``CUDA_VISIBLE_DEVICES=0``; the task instead claims free GPUs among these, as
    ``lvmbench run`` does. On Slurm the task takes the GPUs Slurm gave it. Either way its ranks divide
    the task's cores (see :mod:`lvmbench.runs.devices`)."""

    def __init__(self, run_dir: str, nproc: int = 1, debug: bool = False, local: bool = False,
                 visible: str | None = None):
        self.run_dir, self.nproc, self.debug, self.local, self.visible = run_dir, nproc, debug, local, visible
        self.proc = None

    def __call__(self) -> dict:
        run = RunDir(self.run_dir)
        if process.recover(run).get("status") in INTERRUPTED:
            run.reopen()  # a requeued task
        want = run.spec().get("train.device", "auto")
        if self.local:
            if self.visible is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = self.visible
            env, claims = devices.place(want, self.nproc)
        else:
            env, claims = devices.cpu_env(devices.task_cores(devices.own_cores(), os.environ), self.nproc), []
        try:
            self.proc = process.spawn(run, env, debug=self.debug, nproc=self.nproc, claims=claims)
        except BaseException:
            process.release_owners(claims)
            raise
        self.proc.wait()
        return process.reap(run, self.proc)

    def checkpoint(self, *args, **kwargs):
        """Called by submitit from its signal handler while ``__call__`` waits on the child (so the
        child is stopped and reaped here without ``Popen.wait``, whose lock that wait holds)."""
        from submitit.helpers import DelayedSubmission

        if self.proc is not None and process.stop_child(self.proc.pid):
            RunDir(self.run_dir).mark_killed("preempted or out of time on Slurm: requeued")
        return DelayedSubmission(RunJob(self.run_dir, self.nproc, self.debug, self.local, self.visible))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "proc": None}  # a process handle does not travel


def parse_time(text: str) -> int:
    """Slurm's ``--time`` forms (``MIN``, ``HH:MM:SS``, ``D-HH:MM``, ``D-HH:MM:SS``) in whole minutes."""
    found = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not found:
        raise UserError(f"--slurm-time {text}: expected minutes, HH:MM:SS or D-HH:MM:SS")
    days, a, b, c = (int(g) if g else None for g in found.groups())
    if days is None and b is None:
        return a  # plain minutes
    if c is None and days is None:  # MM:SS
        return a + (1 if b else 0)
    hours, minutes, seconds = a, b or 0, c or 0
    return (days or 0) * 1440 + hours * 60 + minutes + (1 if seconds else 0)


@dataclass
class SlurmOptions:
    partition: str | None = None
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    time: str = "24:00:00"
    array_parallelism: int = 64
    cluster: str = "slurm"  # or submitit's "local" / "debug" (runs here, for trying things out)
    logs: Path | None = None  # submitit's folder (default: RUNS_DIR/.submitit)


class SlurmExecutor:
    """Submit a planned sweep as job arrays; optionally wait for them and ingest each run."""

    def __init__(self, options: SlurmOptions, runs_dir: Path, results: Path, sweep_id: str | None = None,
                 debug: bool = False, interval: float = 2.0):
        if options.cluster not in CLUSTERS:
            raise UserError(f"--slurm-cluster {options.cluster}: choose from {', '.join(CLUSTERS)}")
        try:
            import submitit
        except ImportError:
            raise UserError("the slurm executor needs submitit: pip install 'lvmbench[slurm]'") from None
        self.options, self.runs_dir, self.results = options, Path(runs_dir), Path(results)
        self.sweep_id, self.debug, self.interval = sweep_id, debug, interval
        self.nproc = max(1, options.gpus_per_job)
        folder = options.logs or self.runs_dir / ".submitit"
        self.executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=options.cluster)
        self.executor.update_parameters(
            name=f"lvmbench-{sweep_id or 'sweep'}", timeout_min=parse_time(options.time), nodes=1,
            tasks_per_node=1, gpus_per_node=options.gpus_per_job, cpus_per_task=options.cpus_per_job,
            slurm_partition=options.partition, slurm_array_parallelism=options.array_parallelism)

    def _submit(self, wave: list[Job], by_hash: dict[str, Job], after: str | None = None) -> list[tuple]:
        """Prepare the wave's run directories and submit them as one array; ``(job, handle)`` pairs."""
        if not wave:
            return []
        for job in wave:
            job.run = start_or_continue(job.run, start_spec(job, by_hash), self.runs_dir, self.sweep_id)
        if after:
            self.executor.update_parameters(slurm_additional_parameters={"dependency": f"afterany:{after}"})
        with self.executor.batch():
            local, visible = self.options.cluster != "slurm", os.environ.get("CUDA_VISIBLE_DEVICES")
            handles = [self.executor.submit(RunJob(str(job.run.path), self.nproc, self.debug, local, visible))
                       for job in wave]
        for job, handle in zip(wave, handles):
            job.state = RUNNING
            job.run.note(slurm_job_id=str(handle.job_id))
        return list(zip(wave, handles))

    def run(self, jobs: list[Job], reporter: Reporter | None = None, wait: bool = True) -> list[tuple]:
        """Submit every pending job: on a Slurm cluster both arrays at once, elsewhere the second
        after the first has ended. With ``wait``, follow them and ingest each run as it ends."""
        reporter = reporter or Reporter()
        by_hash = {j.hash: j for j in jobs}
        first = [j for j in jobs if j.state == PENDING and ready(j, by_hash)]
        second = [j for j in jobs if j.state == PENDING and not ready(j, by_hash)]
        submitted = self._submit(first, by_hash)
        if second and self.options.cluster == "slurm":
            array = str(submitted[0][1].job_id).split("_")[0] if submitted else None
            submitted += self._submit(second, by_hash, array)
            second = []
        for job, _ in submitted:
            reporter.started(job)
        if not (wait or second):
            return submitted
        self._follow(submitted, reporter)
        for job in second:
            if ready(job, by_hash) is None:
                block(job, by_hash)
                reporter.settled(job)
        more = self._submit([j for j in second if j.state == PENDING], by_hash)
        for job, _ in more:
            reporter.started(job)
        self._follow(more, reporter)
        return submitted + more

    def _follow(self, submitted: list[tuple], reporter: Reporter) -> None:
        from ..runner import ingest_quietly

        waiting = list(submitted)
        while waiting:
            time.sleep(self.interval)
            for job, handle in list(waiting):
                reporter.progress(job, job.run.last_step())
                if not handle.done():
                    continue
                status = job.run.status()
                if status.get("status") not in DONE:  # the array task died before its child could say
                    status = job.run.mark_failed(f"job {handle.job_id} ended {handle.state}")
                job.state, job.error = status.get("status"), status.get("error")
                ingest_quietly(self.results, job.run)
                waiting.remove((job, handle))
                reporter.settled(job)
