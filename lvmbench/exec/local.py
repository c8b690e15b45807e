"""Local executor: a pool of slots — one per GPU (``CUDA_VISIBLE_DEVICES``), or shares of the CPU
cores — each running one training child at a time, for :class:`lvmbench.runs.scheduler.Scheduler`.
Children are independent processes that write only their run directories.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

from ..errors import UserError
from ..runs import process
from ..runs.rundir import RunDir


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

    def __init__(self, slots: list[Slot], nproc: int = 1, debug: bool = False):
        self.slots, self.nproc, self.debug = slots, nproc, debug

    def threads(self, slot: Slot) -> int:
        return slot.threads

    def launch(self, runs: list[RunDir], slot: Slot, owners: list = (), after: list = ()) -> LocalChild:
        owners = list(owners) or [None]
        return LocalChild(process.spawn(runs[0], slot.env, self.debug, self.nproc, owner=owners[0], members=runs[1:],
                                        member_owners=owners[1:]))
