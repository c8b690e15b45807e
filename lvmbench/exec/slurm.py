"""Slurm executor through submitit (``pip install lvmbench[slurm]``), for
:class:`lvmbench.runs.scheduler.Scheduler`: one job per fused group (a group of one: one run).

The scheduler prepares every run directory on the shared filesystem and submits a job when the
job's stage-1 run is done or, on a Slurm cluster, at once with a dependency on that run's job
(``afterany``). Each job runs the ordinary training child over its group; run directories are the
only channel back, collected by ``lvmbench ingest`` (or by the scheduler with ``--wait``). submitit's
``local`` cluster runs the same jobs as local processes.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..runs import devices, process, scheduler
from ..runs.rundir import RunDir

CLUSTERS = ("slurm", "local", "debug")


class RunJob:
    """What one Slurm job runs: the training child of a prepared fused group (or one run), through
    torchrun when the job has several GPUs; returns the runs' final statuses.

    Checkpointable in submitit's sense: when Slurm preempts the job or its time runs out, submitit
    calls :meth:`checkpoint`, which stops the child (its runs keep ``ckpt/last.pt``, written every
    ``ckpt.every`` steps) and hands submitit the same job to requeue; the requeued job continues
    the runs in their directories from that checkpoint.

    ``visible``: on submitit's ``local`` and ``debug`` clusters, which run jobs on this machine, the
    ``CUDA_VISIBLE_DEVICES`` of the submitting process (None: unset). submitit's local cluster gives
    every job ``CUDA_VISIBLE_DEVICES=0``; the job instead claims free GPUs among these, as
    ``lvmbench run`` does. On Slurm the job takes the GPUs Slurm gave it. Either way its ranks divide
    the job's cores (see :mod:`lvmbench.runs.devices`)."""

    def __init__(self, run_dirs: list[str], nproc: int = 1, debug: bool = False, local: bool = False,
                 visible: str | None = None):
        self.run_dirs, self.nproc, self.debug, self.local, self.visible = list(run_dirs), nproc, debug, local, visible
        self.proc = None

    def _place(self, runs: list[RunDir]) -> tuple[dict, list]:
        """The child's environment and its GPU claims (see the class docstring)."""
        if not self.local:
            return devices.cpu_env(devices.task_cores(devices.own_cores(), os.environ), self.nproc), []
        if self.visible is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = self.visible
        return devices.place(runs[0].spec().get("train.device", "auto"), self.nproc)

    def _spawn(self, runs: list[RunDir]):
        from .local import LocalChild

        env, claims = self._place(runs)
        try:
            self.proc = process.spawn(runs[0], env, debug=self.debug, nproc=self.nproc, members=runs[1:],
                                      claims=claims)
        except BaseException:
            process.release_owners(claims)
            raise
        return LocalChild(self.proc)

    def __call__(self) -> list[dict]:
        return scheduler.run_on_node([RunDir(d) for d in self.run_dirs], self._spawn)

    def checkpoint(self, *args, **kwargs):
        """Called by submitit from its signal handler while ``__call__`` waits on the child (so the
        child is stopped and reaped here without ``Popen.wait``, whose lock that wait holds)."""
        from submitit.helpers import DelayedSubmission

        if self.proc is not None and process.stop_child(self.proc.pid):
            for run_dir in self.run_dirs:
                scheduler.preempted(RunDir(run_dir))
        return DelayedSubmission(RunJob(self.run_dirs, self.nproc, self.debug, self.local, self.visible))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "proc": None}  # a process handle does not travel


class SlurmChild:
    """A submitted job (see :class:`lvmbench.runs.scheduler.Child`)."""

    def __init__(self, handle):
        self.handle = handle

    @property
    def job_id(self) -> str:
        return str(self.handle.job_id)

    def poll(self) -> int | None:
        return 0 if self.handle.done() else None

    def stop(self) -> None:
        self.handle.cancel(check=False)

    def release(self) -> None:
        pass

    def lost(self) -> str | None:
        return f"job {self.handle.job_id} ended {self.handle.state}"


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
    """Submit each fused group (or lone run) as one Slurm job."""

    def __init__(self, options: SlurmOptions, runs_dir: Path, sweep_id: str | None = None, debug: bool = False):
        if options.cluster not in CLUSTERS:
            raise UserError(f"--slurm-cluster {options.cluster}: choose from {', '.join(CLUSTERS)}")
        try:
            import submitit
        except ImportError:
            raise UserError("the slurm executor needs submitit: pip install 'lvmbench[slurm]'") from None
        self.options, self.debug = options, debug
        # Jobs submitted at a time (Slurm queues them); a job's slot frees when it ends.
        self.slots = [f"slurm {i}" for i in range(max(1, options.array_parallelism))]
        self.chains = options.cluster == "slurm"  # dependencies: a stage-2 job waits in Slurm's queue
        self.nproc = max(1, options.gpus_per_job)
        folder = options.logs or Path(runs_dir) / ".submitit"
        self.executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=options.cluster)
        self.executor.update_parameters(
            name=f"lvmbench-{sweep_id or 'sweep'}", timeout_min=parse_time(options.time), nodes=1,
            tasks_per_node=1, gpus_per_node=options.gpus_per_job, cpus_per_task=options.cpus_per_job,
            slurm_partition=options.partition)

    spread = False  # a free array slot is no idle GPU: a fused group stays one job

    def threads(self, slot) -> int:
        return 0

    def take_slot(self, free: list):
        return free.pop(0) if free else None

    def put_back(self, slot, free: list) -> None:
        free.insert(0, slot)

    def launch(self, runs: list[RunDir], slot=None, owners: list = (), after: list = ()) -> SlurmChild:
        if self.chains:
            after_ids = ":".join(c.job_id for c in after)
            self.executor.update_parameters(
                slurm_additional_parameters={"dependency": f"afterany:{after_ids}"} if after_ids else {})
        local, visible = self.options.cluster != "slurm", os.environ.get("CUDA_VISIBLE_DEVICES")
        child = SlurmChild(self.executor.submit(RunJob([str(r.path) for r in runs], self.nproc, self.debug, local,
                                                       visible)))
        for run in runs:
            run.note(slurm_job_id=child.job_id)
        return child
