"""Local executor: a pool of slots — one per GPU (``CUDA_VISIBLE_DEVICES``), or shares of the CPU
cores — each running one training child at a time. Children are independent processes that
write only their run directories; this process finalizes and ingests each as it ends.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..fused import group_key
from ..runs import process
from ..runs.plan import (PENDING, RUNNING, SKIPPED, Job, block, prepare_group, ready, settle, start_or_continue,
                         start_spec, take)


@dataclass(frozen=True)
class Slot:
    """Where one child runs: its environment and, on a CPU, its share of the cores."""

    name: str
    env: dict = field(default_factory=dict)
    threads: int = 0  # train.threads for a child that did not set it (0: leave torch's default)


def visible_gpus() -> list[str]:
    """The GPUs this machine shows (respecting ``CUDA_VISIBLE_DEVICES``), without importing torch."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [g for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip() and g.strip() != "-1"]
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no driver, no library: no GPUs
        return []


def local_slots(gpus: list[str] | None = None, max_parallel: int | None = None, nproc: int = 1,
                cpus: int | None = None) -> list[Slot]:
    """One slot per ``nproc`` GPUs (all visible ones unless ``gpus`` lists them), at most
    ``max_parallel``; without GPUs ``max_parallel`` CPU slots (default 1) splitting the cores."""
    if max_parallel is not None and max_parallel < 1:
        raise UserError(f"--max-parallel {max_parallel}: must be >= 1")
    gpus = visible_gpus() if gpus is None else gpus
    if gpus:
        if len(gpus) < nproc:
            raise UserError(f"--nproc {nproc} needs {nproc} GPUs per run; {len(gpus)} available ({','.join(gpus)})")
        groups = [gpus[i:i + nproc] for i in range(0, len(gpus) - nproc + 1, nproc)]
        return [Slot(f"gpu {','.join(g)}", {"CUDA_VISIBLE_DEVICES": ",".join(g)}) for g in groups][:max_parallel]
    n = max_parallel or 1
    threads = max(1, (cpus or os.cpu_count() or 1) // (n * nproc))
    env = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return [Slot(f"cpu {i}", env, threads) for i in range(n)]


class Reporter:
    """What an executor tells its caller; the default says nothing."""

    def started(self, job: Job) -> None: ...

    def progress(self, job: Job, step: int) -> None: ...

    def settled(self, job: Job) -> None: ...


class LocalExecutor:
    """Run a planned sweep's jobs on local slots, in plan order, as soon as their stage-1 run is done.
    With ``fuse`` (the default) the ready jobs that can train together start as one fused group in
    one slot (see :mod:`lvmbench.fused`); each is still its own run."""

    def __init__(self, slots: list[Slot], runs_dir: Path, results: Path, sweep_id: str | None = None,
                 nproc: int = 1, debug: bool = False, interval: float = 0.5, fuse: bool = True):
        self.slots, self.runs_dir, self.results = slots, Path(runs_dir), Path(results)
        self.sweep_id, self.nproc, self.debug, self.interval, self.fuse = sweep_id, nproc, debug, interval, fuse

    def _group(self, job: Job, jobs: list[Job], by_hash: dict[str, Job], threads: int, reporter: Reporter) -> list[Job]:
        """``job`` (claimed) and the ready, pending jobs that can train with it in one process, each
        claimed for this process (see :func:`take`)."""
        from ..runner import ingest_quietly

        key = group_key(start_spec(job, by_hash, threads)) if self.fuse and job.run is None else None
        if key is None:  # a job that continues an interrupted run goes on alone
            return [job]
        group = [job]
        for other in jobs:
            if (other is not job and other.state == PENDING and other.run is None and ready(other, by_hash)
                    and group_key(start_spec(other, by_hash, threads)) == key and take(other, self.runs_dir)):
                if other.state == SKIPPED:  # another process finished it meanwhile
                    ingest_quietly(self.results, other.run)
                    reporter.settled(other)
                else:
                    group.append(other)
        return group

    def run(self, jobs: list[Job], reporter: Reporter | None = None) -> None:
        """Start each pending job when a slot is free, its stage-1 run is done and this process holds
        its claim (another sweep over the same runs folder may be training it: then it waits, and a
        job that sweep finished is skipped)."""
        from ..runner import ingest_quietly

        reporter = reporter or Reporter()
        by_hash = {j.hash: j for j in jobs}
        free, running = list(self.slots), []  # running: (child, slot, its jobs)
        try:
            while True:
                for job in jobs:
                    if job.state != PENDING:
                        continue
                    can = ready(job, by_hash)
                    if can is None:
                        block(job, by_hash)
                        reporter.settled(job)
                    elif can and free and take(job, self.runs_dir):
                        if job.state == SKIPPED:  # another process finished it meanwhile
                            ingest_quietly(self.results, job.run)
                            reporter.settled(job)
                            continue
                        slot = free.pop(0)
                        group = self._group(job, jobs, by_hash, slot.threads, reporter)
                        specs = [start_spec(j, by_hash, slot.threads) for j in group]
                        runs = (prepare_group(specs, self.runs_dir, self.sweep_id) if len(group) > 1 else
                                [start_or_continue(job.run, specs[0], self.runs_dir, self.sweep_id)])
                        for j, run in zip(group, runs):
                            j.run, j.state = run, RUNNING
                            reporter.started(j)
                        running.append((process.spawn(runs[0], slot.env, self.debug, self.nproc, members=runs[1:]),
                                        slot, group))
                if not running and not any(j.state == PENDING for j in jobs):
                    return
                time.sleep(self.interval)
                for entry in list(running):
                    proc, slot, group = entry
                    for job in group:
                        reporter.progress(job, job.run.last_step())
                    if proc.poll() is None:
                        continue
                    for job, status in zip(group, process.reap_group([j.run for j in group], proc)):
                        settle(job, status)
                        ingest_quietly(self.results, job.run)
                        reporter.settled(job)
                    running.remove(entry)
                    free.append(slot)
        except BaseException:  # Ctrl-C, SIGTERM (see runner.cancel_on_sigterm) or a crash: no orphans
            for proc, _, group in running:
                process.cancel_group([j.run for j in group], proc)
                ingest_quietly(self.results, *[j.run for j in group])
            raise
