"""A stand-in for ``pynvml`` (nvidia-ml-py) and for torch's CUDA queries: a machine of several GPUs
with UUIDs, MIG instances, energy counters that some GPUs lack, and per-process memory.

``FakeNvml(gpus)`` is a module-like object with the NVML calls lvmbench makes; :func:`install`
puts it in ``sys.modules['pynvml']`` and patches ``torch.cuda`` so that torch sees the same devices
(or, ``usable=False``, none: a torch build the driver is too old for).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from types import SimpleNamespace


class NVMLError(Exception):
    pass


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    used_mib: float = 1024.0
    power_w: float = 300.0
    energy_step_j: float | None = 100.0  # joules added per energy reading; None: no counter on this GPU
    processes: dict = field(default_factory=dict)  # pid -> bytes
    mig: list["FakeGpu"] = field(default_factory=list)  # instances (a GPU in MIG mode)
    parent: "FakeGpu | None" = None
    energy_j: float = 0.0


class FakeNvml:
    """The NVML calls lvmbench makes, over ``gpus`` (driver ``driver``, supporting CUDA ``cuda``)."""

    NVMLError = NVMLError

    def __init__(self, gpus: list[FakeGpu], driver: str = "535.104.05", cuda: int = 12020):
        self.gpus, self.driver, self.cuda = gpus, driver, cuda
        for gpu in gpus:
            for child in gpu.mig:
                child.parent = gpu
        self.inits = 0

    def _all(self):
        return [g for gpu in self.gpus for g in (gpu, *gpu.mig)]

    # -- system
    def nvmlInit(self):
        self.inits += 1

    def nvmlShutdown(self):
        pass

    def nvmlSystemGetDriverVersion(self):
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self):
        return self.cuda

    # -- devices
    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        return self.gpus[index]

    def nvmlDeviceGetHandleByUUID(self, uuid):
        uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
        for g in self._all():
            if g.uuid == uuid:
                return g
        raise NVMLError("Not Found")

    def nvmlDeviceGetUUID(self, h):
        return h.uuid

    def nvmlDeviceGetName(self, h):
        return h.name

    def nvmlDeviceGetMigMode(self, h):
        if h.parent is not None:
            raise NVMLError("Not Supported")
        return [1 if h.mig else 0, 1 if h.mig else 0]

    def nvmlDeviceGetMaxMigDeviceCount(self, h):
        return 7 if h.mig else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h, i):
        if i >= len(h.mig):
            raise NVMLError("Not Found")
        return h.mig[i]

    def nvmlDeviceIsMigDeviceHandle(self, h):
        return h.parent is not None

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, h):
        return h.parent

    # -- figures (a MIG instance has memory and processes, not power, energy or utilisation)
    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=int(h.used_mib * 2**20), total=80 * 2**30, free=80 * 2**30 - int(h.used_mib * 2**20))

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in h.processes.items()]

    def _board_only(self, h):
        if h.parent is not None:
            raise NVMLError("Not Supported")

    def nvmlDeviceGetPowerUsage(self, h):
        self._board_only(h)
        return int(h.power_w * 1000)

    def nvmlDeviceGetUtilizationRates(self, h):
        self._board_only(h)
        return SimpleNamespace(gpu=90, memory=40)

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        self._board_only(h)
        if h.energy_step_j is None:
            raise NVMLError("Not Supported")
        h.energy_j += h.energy_step_j
        return int(h.energy_j * 1000)


def h100s(n: int, **kwargs) -> list[FakeGpu]:
    return [FakeGpu(f"GPU-{i:08x}-1111-2222-3333-444455556666", **kwargs) for i in range(n)]


def install(monkeypatch, nvml: FakeNvml, usable: bool = True, torch_devices: list[FakeGpu] | None = None,
            torch_cuda: str | None = "13.0"):
    """``pynvml`` is ``nvml``; torch's CUDA queries see ``torch_devices`` (default: every device of ``nvml``
    CUDA can run on, MIG instances for a GPU in MIG mode), or none (``usable=False``); torch was built
    for CUDA ``torch_cuda``."""
    import torch

    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    shown = torch_devices if torch_devices is not None else [
        g for gpu in nvml.gpus for g in (gpu.mig or [gpu])]

    def properties(i):
        g = shown[i]
        bare = g.uuid.split("-", 1)[1]
        return SimpleNamespace(uuid=bare, name=g.name, total_memory=80 * 2**30)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: usable)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(shown) if usable else 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", properties)
    monkeypatch.setattr(torch.version, "cuda", torch_cuda)
    return nvml
