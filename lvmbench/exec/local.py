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
from ..runs import devices, process
from ..runs.plan import (PENDING, RUNNING, SKIPPED, Job, block, prepare_group, ready, settle, start_or_continue,
                         start_spec, take)


@dataclass(frozen=True)
class Slot:
    """Where one child runs: its environment (its GPUs by UUID, its share of the cores), its threads, and
    the GPUs it claims while a child runs there (see :mod:`lvmbench.runs.devices`)."""

    name: str
    env: dict = field(default_factory=dict)
    threads: int = 0  # train.threads for a child that did not set it (0: leave torch's default)
    gpus: tuple = ()

    def claim(self) -> list | None:
        """The claims on its GPUs for a child (None: another lvmbench process holds one of them)."""
        locks = []
        for gpu in self.gpus:
            lock = devices.gpu_lock(gpu)
            if not lock.acquire():
                process.release_owners(locks)
                return None
            locks.append(lock)
        return locks


def local_slots(gpus: list[str] | None = None, max_parallel: int | None = None, nproc: int = 1,
                cpus: int | None = None, device: str = "auto", machine: devices.Machine | None = None) -> list[Slot]:
    """One slot per ``nproc`` GPUs (all visible ones unless ``gpus`` lists them: indices or UUIDs), at
    most ``max_parallel``; without GPUs (or with ``device=cpu``) ``max_parallel`` CPU slots (default 1).
    The cores (``cpus`` of them, default this process's) are divided between the slots."""
    if max_parallel is not None and max_parallel < 1:
        raise UserError(f"--max-parallel {max_parallel}: must be >= 1")
    if device == "cpu":
        found = []
    else:
        machine = devices.query() if machine is None else machine
        entries = gpus if gpus is not None else devices.visible_entries(os.environ.get("CUDA_VISIBLE_DEVICES"))
        found = devices.visible(machine.gpus, entries)
        if gpus and not machine.gpus:  # no NVML here: the names as given
            found = [devices.Gpu(g) for g in gpus]
    cores = list(range(cpus)) if cpus else devices.own_cores()
    if found:
        devices.check_gpu_count(found, nproc)
        groups = [found[i:i + nproc] for i in range(0, len(found) - nproc + 1, nproc)][:max_parallel]
        shares = devices.split_cores(cores, len(groups))
        return [Slot(f"gpu {','.join(g.uuid for g in group)}", {**devices.gpu_env(group), **devices.cpu_env(share, nproc)},
                     max(1, len(share) // nproc), tuple(group)) for group, share in zip(groups, shares)]
    shares = devices.split_cores(cores, max_parallel or 1)
    return [Slot(f"cpu {i}", {"CUDA_VISIBLE_DEVICES": "", **devices.cpu_env(share, nproc)}, max(1, len(share) // nproc))
            for i, share in enumerate(shares)]


def claim_slot(free: list[Slot]) -> tuple[Slot, list] | None:
    """The first free slot whose GPUs no other lvmbench process holds, taken out of ``free``, with its claims."""
    for slot in free:
        claims = slot.claim()
        if claims is not None:
            free.remove(slot)
            return slot, claims
    return None


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

    def _group(self, job: Job, jobs: list[Job], by_hash: dict[str, Job], threads: int, reporter: Reporter,
               free_slots: int = 1) -> list[Job]:
        """``job`` (claimed) and the ready, pending jobs that can train with it in one process, each
        claimed for this process (see :func:`take`): at most ⌈ready / free slots⌉ of them, so that the
        other ``free_slots`` (this one included) get work too."""
        from ..runner import ingest_quietly

        key = group_key(start_spec(job, by_hash, threads)) if self.fuse and job.run is None else None
        if key is None:  # a job that continues an interrupted run goes on alone
            return [job]
        group = [job]
        mates = [o for o in jobs if o is not job and o.state == PENDING and o.run is None and ready(o, by_hash)
                 and group_key(start_spec(o, by_hash, threads)) == key]
        cap = devices.group_cap(len(mates) + 1, free_slots)
        for other in mates:
            if len(group) >= cap:
                break
            if take(other, self.runs_dir):
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
                    elif can and free and (placed := claim_slot(free)):
                        slot, claims = placed
                        if not take(job, self.runs_dir) or job.state == SKIPPED:
                            process.release_owners(claims)
                            free.insert(0, slot)
                            if job.state == SKIPPED:  # another process finished it meanwhile
                                ingest_quietly(self.results, job.run)
                                reporter.settled(job)
                            continue
                        try:
                            group = self._group(job, jobs, by_hash, slot.threads, reporter, len(free) + 1)
                            specs = [start_spec(j, by_hash, slot.threads) for j in group]
                            runs = (prepare_group(specs, self.runs_dir, self.sweep_id) if len(group) > 1 else
                                    [start_or_continue(job.run, specs[0], self.runs_dir, self.sweep_id)])
                            for j, run in zip(group, runs):
                                j.run, j.state = run, RUNNING
                                reporter.started(j)
                            proc = process.spawn(runs[0], slot.env, self.debug, self.nproc, members=runs[1:],
                                                 claims=claims)
                        except BaseException:
                            process.release_owners(claims)
                            raise
                        running.append((proc, slot, group))
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
