"""The system monitor: a thread that samples NVML (GPU memory, power, utilisation, energy).

It samples the GPUs the run uses, every rank's, found by UUID (NVML ignores ``CUDA_VISIBLE_DEVICES``).
Per process: ``mem_mib`` (the run's processes' GPU memory, from NVML's list of compute processes;
``mem_scope`` says when only the device's total was available). Per device (per board for a MIG
instance): ``power_w``, ``util_pct``, ``energy_j``; ``shared`` marks a sample whose device also ran
other processes, so these include theirs. On a CPU run it records the process's resident memory
and NULL power; NVML errors never stop a run.
"""
from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path
from typing import Callable

from ..runs.segments import average_power, energy_joules


def rss_mib() -> float:
    """Resident memory of this process in MiB (from /proc when there is one)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def family_pids() -> set[int]:
    """This process and, under torchrun, its sibling ranks (the processes with the same parent)."""
    pids = {os.getpid()}
    if "LOCAL_RANK" not in os.environ:
        return pids
    parent = os.getppid()
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent:
            pids.add(int(entry.parent.name))
    return pids


class _Nvml:
    """The GPUs a run uses, found through NVML by UUID (``uuids``: torch's devices of the run, see
    :func:`lvmbench.train.gpus.run_uuids`). Power, energy and utilisation are a board's (a MIG
    instance's are its parent GPU's); memory is the run's own processes' where NVML lists them, else
    the device's."""

    def __init__(self, uuids: list[str]):
        import pynvml

        self.nv = nv = pynvml
        nv.nvmlInit()
        self.devices = []  # (index in the run, uuid, handle, board uuid, board handle)
        for i, uuid in enumerate(uuids):
            handle = nv.nvmlDeviceGetHandleByUUID(uuid)
            board, board_uuid = handle, uuid
            if self._is_mig(handle):
                board = nv.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)
                board_uuid = _text(nv.nvmlDeviceGetUUID(board))
            self.devices.append((i, uuid, handle, board_uuid, board))
        self.name = _text(nv.nvmlDeviceGetName(self.devices[0][4])) if self.devices else None
        self.pids = family_pids()

    def _is_mig(self, handle) -> bool:
        try:
            return bool(self.nv.nvmlDeviceIsMigDeviceHandle(handle))
        except self.nv.NVMLError:
            return False

    def sample(self, index: int, uuid: str, handle, board_uuid: str, board) -> dict:
        nv = self.nv

        def safe(fn, h, scale=1.0):
            try:
                return fn(h) * scale
            except nv.NVMLError:
                return None

        device_mem = safe(lambda h: nv.nvmlDeviceGetMemoryInfo(h).used, handle, 1 / 2**20)
        try:
            procs = nv.nvmlDeviceGetComputeRunningProcesses(handle)
        except nv.NVMLError:
            procs = None
        ours = [p.usedGpuMemory for p in procs or () if p.pid in self.pids and p.usedGpuMemory is not None]
        others = {p.pid for p in procs or ()} - self.pids
        return {"gpu_index": index, "gpu_uuid": uuid, "board_uuid": board_uuid,
                "mem_mib": sum(ours) / 2**20 if ours else device_mem, "device_mem_mib": device_mem,
                "mem_scope": "process" if ours else "device",
                # the board's figures include other processes: another program, or another MIG instance
                "shared": bool(others) or board_uuid != uuid,
                "power_w": safe(nv.nvmlDeviceGetPowerUsage, board, 1e-3),
                "util_pct": safe(lambda h: nv.nvmlDeviceGetUtilizationRates(h).gpu, board),
                "energy_j": safe(nv.nvmlDeviceGetTotalEnergyConsumption, board, 1e-3)}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SystemMonitor:
    """Samples every ``interval`` seconds and hands each record to ``emit`` (a JSONL writer)."""

    def __init__(self, emit: Callable[[dict], None], interval: float = 2.0, gpus: list[str] = ()):
        """``gpus``: the UUIDs of the GPUs the run uses (every rank's); none: a CPU run."""
        self.emit, self.interval = emit, interval
        self.nvml = None
        if gpus:
            try:
                self.nvml = _Nvml(list(gpus))
            except Exception as exc:  # noqa: BLE001 - no driver, no library: fall back to RSS, and say so
                print(f"warning: GPU figures unavailable (NVML: {type(exc).__name__}: {exc})", flush=True)
                self.nvml = None
        self.gpu_name = self.nvml.name if self.nvml else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="lvmbench-monitor")
        self.samples: list[dict] = []

    def sample(self) -> list[dict]:
        ts = time.time()
        if self.nvml and self.nvml.devices:
            records = [{"ts": ts, **self.nvml.sample(*device)} for device in self.nvml.devices]
        else:
            records = [{"ts": ts, "gpu_index": None, "mem_mib": rss_mib(), "mem_scope": "host", "power_w": None,
                        "util_pct": None, "energy_j": None}]
        for r in records:
            self.samples.append(r)
            self.emit(r)
        return records

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> "SystemMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()

    def summary(self, wall_s: float) -> dict:
        """Average power and energy over the run, summed over the GPU boards it used (energy from each
        board's NVML counter, else its power × time); ``gpu_shared``: some GPU also ran other processes,
        so its power and energy are device-wide, not the run's alone (None on a CPU)."""
        energy_j = energy_joules(self.samples, wall_s)
        gpu = [s for s in self.samples if s.get("gpu_uuid")]
        return {"avg_power_w": average_power(self.samples),
                "energy_kwh": energy_j / 3.6e6 if energy_j is not None else None, "gpu_name": self.gpu_name,
                "gpu_uuids": sorted({s["gpu_uuid"] for s in gpu}) or None,
                "gpu_shared": any(s["shared"] for s in gpu) if gpu else None}
