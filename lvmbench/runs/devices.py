"""Which devices a run uses, and how one machine's GPUs and cores are shared between runs (torch-free).

A GPU is named by its UUID everywhere (NVML's ``GPU-…``, or ``MIG-…`` for a MIG instance, whose
power and energy belong to its parent GPU): NVML ignores ``CUDA_VISIBLE_DEVICES`` and CUDA may
order devices differently from NVML, so an index means nothing across the two. A child is given
its GPUs as ``CUDA_VISIBLE_DEVICES=<uuid>[,<uuid>…]`` and maps them back with torch's device
properties (``lvmbench.train.gpus``). A GPU is *claimed* by an owner lock (``flock`` on a file per
UUID, inherited by the child like a run's lock), so concurrent ``lvmbench run``s, sweeps and the
UI's runs each get their own GPU. Cores are divided the same way: ``LVMBENCH_CPUS`` (a CPU list such
as ``0-7``) tells a child which cores are its own; each of its ranks takes an equal part of them.

Everything here but :func:`query` and :func:`claim` is a pure function of what it is given.
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .rundir import Lock

CPUS_ENV = "LVMBENCH_CPUS"  # the cores a child (all its ranks together) may use, e.g. "0-7,16"


@dataclass(frozen=True)
class Gpu:
    """A device CUDA can run on: a whole GPU, or a MIG instance (``parent``: its GPU's UUID)."""

    uuid: str
    name: str = ""
    index: int = 0  # NVML index of the physical GPU (of the parent for a MIG instance)
    parent: str | None = None
    busy_pids: tuple[int, ...] = ()  # compute processes NVML shows on it


@dataclass(frozen=True)
class Machine:
    """What NVML reports: the schedulable devices (GPUs, and the instances of GPUs in MIG mode), the
    driver's version and the newest CUDA version it supports (e.g. ``12.2``)."""

    gpus: tuple[Gpu, ...] = ()
    driver: str | None = None
    cuda: str | None = None


def bare_uuid(uuid) -> str:
    """A UUID without NVML's ``GPU-``/``MIG-`` prefix, lower case: what torch's device properties show."""
    text = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
    for prefix in ("GPU-", "MIG-"):
        if text.upper().startswith(prefix):
            text = text[len(prefix):]
    return text.strip().lower()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pids(nv, handle) -> tuple[int, ...]:
    try:
        return tuple(int(p.pid) for p in nv.nvmlDeviceGetComputeRunningProcesses(handle))
    except nv.NVMLError:
        return ()


def _mig_children(nv, handle) -> list:
    """The MIG instances of a GPU in MIG mode (none otherwise, or where MIG is not supported)."""
    try:
        if nv.nvmlDeviceGetMigMode(handle)[0] != 1:
            return []
        found = []
        for i in range(nv.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                found.append(nv.nvmlDeviceGetMigDeviceHandleByIndex(handle, i))
            except nv.NVMLError:
                continue  # an unused slot
        return found
    except (nv.NVMLError, AttributeError):
        return []


def machine_from(nv) -> Machine:
    """The :class:`Machine` an initialised NVML module (``pynvml``, or a stand-in) reports."""
    gpus = []
    for index in range(nv.nvmlDeviceGetCount()):
        handle = nv.nvmlDeviceGetHandleByIndex(index)
        uuid, name = _text(nv.nvmlDeviceGetUUID(handle)), _text(nv.nvmlDeviceGetName(handle))
        children = _mig_children(nv, handle)
        if not children:
            gpus.append(Gpu(uuid, name, index, None, _pids(nv, handle)))
        for child in children:
            gpus.append(Gpu(_text(nv.nvmlDeviceGetUUID(child)), name, index, uuid, _pids(nv, child)))
    try:
        version = nv.nvmlSystemGetCudaDriverVersion()
        cuda = f"{version // 1000}.{version % 1000 // 10}"
    except nv.NVMLError:
        cuda = None
    return Machine(tuple(gpus), _text(nv.nvmlSystemGetDriverVersion()), cuda)


def query() -> Machine:
    """This machine's GPUs through NVML; no driver or no library: a machine without GPUs."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no library, no driver, no GPU
        return Machine()
    try:
        return machine_from(pynvml)
    except pynvml.NVMLError:
        return Machine()
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def visible_entries(value: str | None) -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` as a list of entries (None: unset, every device is visible). As CUDA
    reads it, the list ends at the first entry that names no device (``-1`` hides them all)."""
    if value is None:
        return None
    entries = []
    for entry in (e.strip() for e in value.split(",")):
        if not entry or entry == "-1":
            break
        entries.append(entry)
    return entries


def visible(gpus, entries: list[str] | None) -> list[Gpu]:
    """The devices ``entries`` (see :func:`visible_entries`) name, in their order: an index counts the
    whole GPUs (NVML order), a UUID (or the start of one, as CUDA accepts) names a GPU or MIG instance."""
    gpus = list(gpus)
    if entries is None:
        return gpus
    whole = [g for g in gpus if g.parent is None]
    out = []
    for entry in entries:
        if entry.isdigit():
            found = [whole[int(entry)]] if int(entry) < len(whole) else []
        else:
            want = entry.upper()
            found = [g for g in gpus if g.uuid.upper().startswith(want)]
        if len(found) != 1:
            break  # CUDA stops at an entry it cannot resolve
        out.append(found[0])
    return out


def refusal(machine: Machine, seen: list[Gpu], torch_cuda: str | None, usable: bool, want: str = "auto",
            torch_version: str = "") -> str | None:
    """Why a run must not start on this machine, or None. ``seen``: the GPUs visible to it through NVML;
    ``torch_cuda``: the CUDA version torch was built for (None: a CPU-only build); ``usable``: whether
    ``torch.cuda`` can use a GPU; ``want``: ``train.device`` (``cpu`` runs on the CPU on purpose)."""
    if want == "cpu" or usable:
        return None
    if not seen:
        if want == "cuda":
            return "train.device=cuda, but no GPU is visible (NVML finds none; check CUDA_VISIBLE_DEVICES)"
        return None
    build = f"a CUDA {torch_cuda} build" if torch_cuda else "a CPU-only build"
    need = f" for CUDA {machine.cuda} or older" if machine.cuda else ""
    return (f"{len(seen)} GPU(s) visible (NVIDIA driver {machine.driver or '?'}, supports CUDA {machine.cuda or '?'}) "
            f"but torch {torch_version} ({build}) cannot use them: install a torch build{need} (README, "
            f"section GPUs), or train on the CPU on purpose with --device cpu")


def group_cap(ready: int, free_slots: int) -> int:
    """The most members a fused group may take when ``ready`` jobs could join it and ``free_slots``
    slots are free: ⌈ready / free slots⌉, so that every free slot gets work."""
    return max(1, math.ceil(ready / max(1, free_slots)))


# -- cores -----------------------------------------------------------------------------------------
def parse_cpus(text: str) -> list[int]:
    """A CPU list (``0-3,8``) as sorted core numbers."""
    cores: set[int] = set()
    for part in (p.strip() for p in text.split(",") if p.strip()):
        lo, _, hi = part.partition("-")
        cores.update(range(int(lo), int(hi or lo) + 1))
    return sorted(cores)


def format_cpus(cores: list[int]) -> str:
    """Core numbers as a CPU list (``0-3,8``)."""
    out, cores = [], sorted(set(cores))
    start = prev = None
    for c in [*cores, None]:
        if c is not None and prev is not None and c == prev + 1:
            prev = c
            continue
        if start is not None:
            out.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = c
    return ",".join(out)


def split_cores(cores: list[int], parts: int) -> list[list[int]]:
    """``cores`` in ``parts`` near-equal, contiguous shares (each at least one core: with more parts
    than cores, parts share cores round-robin)."""
    cores, parts = sorted(cores), max(1, parts)
    if len(cores) < parts:
        return [[cores[i % len(cores)]] for i in range(parts)] if cores else [[] for _ in range(parts)]
    size, extra = divmod(len(cores), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(cores[start:end])
        start = end
    return out


def own_cores() -> list[int]:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def task_cores(cores: list[int], env: dict) -> list[int]:
    """A Slurm task's cores: its affinity, at most ``SLURM_CPUS_PER_TASK`` of them (a cluster without
    task affinity leaves a task every core of the node)."""
    allotted = env.get("SLURM_CPUS_PER_TASK", "")
    return cores[:int(allotted)] if allotted.isdigit() and int(allotted) > 0 else cores


def cpu_env(cores: list[int], ranks: int = 1) -> dict:
    """A child's environment for its share of the cores: the list (each rank narrows it to its part,
    :func:`take_rank_share`) and one OpenMP/MKL thread per core of a rank's part."""
    threads = max(1, len(cores) // max(1, ranks))
    return {CPUS_ENV: format_cpus(cores), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def take_rank_share(env: dict | None = None, rank: int = 0, ranks: int = 1) -> list[int] | None:
    """In a child, before torch starts its thread pool: run on this rank's part of ``LVMBENCH_CPUS``
    (pin the process to it, one OpenMP thread per core). Returns the cores (None: no share given)."""
    env = os.environ if env is None else env
    if not env.get(CPUS_ENV):
        return None
    mine = split_cores(parse_cpus(env[CPUS_ENV]), ranks)[rank % max(1, ranks)]
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, mine)
        except OSError:
            pass  # cores outside this process's cgroup: keep what it has
    env.update({k: v for k, v in cpu_env(mine).items() if k != CPUS_ENV})
    return mine


# -- claims ----------------------------------------------------------------------------------------
def locks_dir() -> Path:
    """Where GPU claims live: one folder per user and machine (``$LVMBENCH_GPU_LOCKS`` to move it)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(os.environ.get("LVMBENCH_GPU_LOCKS") or Path(tempfile.gettempdir()) / f"lvmbench-gpus-{uid}")


def gpu_lock(gpu: Gpu, folder: Path | None = None) -> Lock:
    return Lock((folder or locks_dir()) / f"{gpu.uuid}.lock")


def pick(gpus: list[Gpu], claimed: set[str], n: int, own_pids: set[int] = frozenset()) -> list[Gpu] | None:
    """``n`` GPUs for a child: unclaimed and idle ones first (no compute process but ours), then unclaimed
    ones that other programs use (their figures are then shared; see the monitor). None: fewer than ``n``
    unclaimed."""
    unclaimed = [g for g in gpus if g.uuid not in claimed]
    idle = [g for g in unclaimed if not set(g.busy_pids) - set(own_pids)]
    ranked = idle + [g for g in unclaimed if g not in idle]
    return ranked[:n] if len(ranked) >= n else None


def claim(gpus: list[Gpu], n: int, folder: Path | None = None) -> tuple[list[Gpu], list[Lock]] | None:
    """Claim ``n`` of ``gpus`` (see :func:`pick`) for a child: their locks, held by this process until
    released (the child inherits them). None when fewer than ``n`` are unclaimed."""
    claimed: set[str] = set()
    while True:
        chosen = pick(gpus, claimed, n, {os.getpid()})
        if chosen is None:
            return None
        locks = []
        for g in chosen:
            lock = gpu_lock(g, folder)
            if not lock.acquire():  # taken meanwhile: try again without it
                claimed.add(g.uuid)
                break
            locks.append(lock)
        else:
            return chosen, locks
        for lock in locks:
            lock.release()


def gpu_env(chosen: list[Gpu]) -> dict:
    return {"CUDA_VISIBLE_DEVICES": ",".join(g.uuid for g in chosen)}


def check_gpu_count(seen: list[Gpu], nproc: int) -> None:
    if len(seen) < nproc:
        raise UserError(f"--nproc {nproc} needs {nproc} GPUs per run; {len(seen)} available "
                        f"({','.join(g.uuid for g in seen)})")


def place(want: str, nproc: int = 1, machine: Machine | None = None, say=print,
          poll_s: float = 1.0) -> tuple[dict, list[Lock]]:
    """Where a child of ``lvmbench run`` trains: its environment (its GPUs by UUID, its cores) and the
    claims it holds on its GPUs (see :func:`claim`; waits, saying so once, while every visible GPU is
    claimed). ``want``: ``train.device``; ``cpu``, or a machine without visible GPUs: a CPU child."""
    cores = own_cores()
    if want == "cpu":
        return {"CUDA_VISIBLE_DEVICES": "", **cpu_env(cores, nproc)}, []
    machine = query() if machine is None else machine
    seen = visible(machine.gpus, visible_entries(os.environ.get("CUDA_VISIBLE_DEVICES")))
    if not seen:
        return cpu_env(cores, nproc), []
    check_gpu_count(seen, nproc)
    said = False
    while (got := claim(seen, nproc)) is None:
        if not said:
            say(f"waiting for {nproc} of the {len(seen)} visible GPU(s): other lvmbench runs hold them")
            said = True
        time.sleep(poll_s)
    chosen, locks = got
    return {**gpu_env(chosen), **cpu_env(cores, nproc)}, locks
