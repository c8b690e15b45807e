"""The system monitor: a thread that samples NVML (GPU memory, power, utilisation, energy).

On a machine without NVML it records the process's resident memory and NULL power; NVML errors
never stop a run.
"""
from __future__ import annotations

import os
import resource
import threading
import time
from typing import Callable


def rss_mib() -> float:
    """Resident memory of this process in MiB (from /proc when there is one)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Nvml:
    """The GPUs this process sees through NVML, or none."""

    def __init__(self, visible: list[int]):
        import pynvml

        self.nv = pynvml
        pynvml.nvmlInit()
        self.handles = [(i, pynvml.nvmlDeviceGetHandleByIndex(i)) for i in visible]
        self.name = pynvml.nvmlDeviceGetName(self.handles[0][1]) if self.handles else None

    def sample(self, index: int, handle) -> dict:
        nv = self.nv

        def safe(fn, scale=1.0):
            try:
                return fn(handle) * scale
            except nv.NVMLError:
                return None

        mem = safe(lambda h: nv.nvmlDeviceGetMemoryInfo(h).used, 1 / 2**20)
        return {"gpu_index": index, "mem_mib": mem, "power_w": safe(nv.nvmlDeviceGetPowerUsage, 1e-3),
                "util_pct": safe(lambda h: nv.nvmlDeviceGetUtilizationRates(h).gpu),
                "energy_j": safe(nv.nvmlDeviceGetTotalEnergyConsumption, 1e-3)}


def _visible_gpus() -> list[int]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return [0]
    return [int(x) for x in env.split(",") if x.strip().isdigit()]


class SystemMonitor:
    """Samples every ``interval`` seconds and hands each record to ``emit`` (a JSONL writer)."""

    def __init__(self, emit: Callable[[dict], None], interval: float = 2.0, use_gpu: bool = True):
        self.emit, self.interval = emit, interval
        self.nvml = None
        if use_gpu:
            try:
                self.nvml = _Nvml(_visible_gpus())
            except Exception:  # noqa: BLE001 - no driver, no library, no GPU: fall back to RSS
                self.nvml = None
        self.gpu_name = self.nvml.name if self.nvml else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="lvmbench-monitor")
        self.samples: list[dict] = []

    def sample(self) -> list[dict]:
        ts = time.time()
        if self.nvml and self.nvml.handles:
            records = [{"ts": ts, **self.nvml.sample(i, h)} for i, h in self.nvml.handles]
        else:
            records = [{"ts": ts, "gpu_index": None, "mem_mib": rss_mib(), "power_w": None,
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
        """Average power and energy over the run (energy from NVML's counter, else power × time)."""
        power = [s["power_w"] for s in self.samples if s["power_w"] is not None]
        avg_power = sum(power) / len(power) if power else None
        energy_j = None
        by_gpu: dict = {}
        for s in self.samples:
            if s["energy_j"] is not None:
                by_gpu.setdefault(s["gpu_index"], []).append(s["energy_j"])
        if by_gpu:
            energy_j = sum(v[-1] - v[0] for v in by_gpu.values())
        elif avg_power is not None:
            energy_j = avg_power * wall_s
        return {"avg_power_w": avg_power, "energy_kwh": energy_j / 3.6e6 if energy_j is not None else None,
                "gpu_name": self.gpu_name}
