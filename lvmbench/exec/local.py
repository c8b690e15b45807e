"""Local executor: a pool of slots — one per GPU (``CUDA_VISIBLE_DEVICES``), or shares of the CPU
cores — each running one training child at a time, for :class:`lvmbench.runs.scheduler.Scheduler`.
Children are independent processes that write only their run directories.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

from ..errors import UserError
from ..runs import devices, process
from ..runs.rundir import RunDir


@dataclass(frozen=True)
class Slot:
    """Where one child runs: its environment (its GPUs by UUID, its share of the cores), its threads, and
    the GPUs it claims while a child runs there (see :mod:`lvmbench.runs.devices`)."""

    name: str
    env: dict = field(default_factory=dict)
    threads: int = 0  # train.threads for a child that did not set it (0: leave torch's default)
    gpus: tuple = ()
    place: bool = False  # choose the GPUs and cores at launch (``lvmbench run``: see ``devices.place``)

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


class LocalChild:
    """A training child on this machine (see :class:`lvmbench.runs.scheduler.Child`)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    def poll(self) -> int | None:
        return self.proc.poll()

    def stop(self) -> None:
        process.stop(self.proc)

    def release(self) -> None:
        process.release_owners(self.proc.owners)

    def lost(self) -> str | None:
        return None


class LocalExecutor:
    """Training children on local slots, one at a time each (torchrun over ``nproc`` processes)."""

    chains = False

    spread = True  # an idle slot is an idle GPU (or core share): fused groups are split to fill free slots

    def __init__(self, slots: list[Slot], nproc: int = 1, debug: bool = False, say=print):
        self.slots, self.nproc, self.debug, self.say = slots, nproc, debug, say
        self.claims: dict[str, list] = {}  # slot name -> its GPU claims, from take_slot until launch

    def threads(self, slot: Slot) -> int:
        return slot.threads

    def take_slot(self, free: list[Slot]) -> Slot | None:
        """The first free slot whose GPUs no other lvmbench process holds (claimed now), or None."""
        placed = claim_slot(free)
        if placed is None:
            return None
        slot, self.claims[slot.name] = placed
        return slot

    def put_back(self, slot: Slot, free: list[Slot]) -> None:
        """A slot taken but not used: its claims go back, it is free again."""
        process.release_owners(self.claims.pop(slot.name, []))
        free.insert(0, slot)

    def launch(self, runs: list[RunDir], slot: Slot, owners: list = (), after: list = ()) -> LocalChild:
        """Start the child in ``slot``: a sweep's slot with the GPUs claimed for it, or (``Slot.place``:
        ``lvmbench run``) on free GPUs claimed now, waiting while other lvmbench runs hold them all."""
        if slot.place:
            env, claims = devices.place(runs[0].spec().get("train.device", "auto"), self.nproc, say=self.say)
        else:
            env, claims = slot.env, self.claims.pop(slot.name, [])
        owners = list(owners) or [None]
        try:
            return LocalChild(process.spawn(runs[0], env, self.debug, self.nproc, owner=owners[0], members=runs[1:],
                                            member_owners=owners[1:], claims=claims))
        except BaseException:
            process.release_owners(claims)
            raise
