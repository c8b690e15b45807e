"""The GPUs of a training process, seen from torch: the refusal to train on the CPU by accident, the
device a run trains on, and the UUIDs that name its GPUs to NVML (see :mod:`lvmbench.runs.devices`)."""
from __future__ import annotations

import os

import torch

from ..errors import UserError
from ..runs import devices


def run_uuids(dist, machine: devices.Machine | None = None) -> list[str]:
    """The NVML UUIDs of the GPUs a run's processes use (local rank r on torch's device r; ``dist``: this
    process's :class:`~lvmbench.train.distributed.Dist`), matched to NVML's devices through torch's
    device properties (a MIG instance by its own UUID)."""
    machine = devices.query() if machine is None else machine
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", dist.world))
    by_bare = {devices.bare_uuid(g.uuid): g.uuid for g in machine.gpus}
    out = []
    for i in range(min(ranks, torch.cuda.device_count())):
        bare = devices.bare_uuid(torch.cuda.get_device_properties(i).uuid)
        out.append(by_bare.get(bare, f"GPU-{bare}"))
    return out


def refusal(want: str = "auto", machine: devices.Machine | None = None) -> str | None:
    """Why this process must not train (NVML shows GPUs that torch cannot use), or None."""
    if want == "cpu":
        return None
    machine = devices.query() if machine is None else machine
    seen = devices.visible(machine.gpus, devices.visible_entries(os.environ.get("CUDA_VISIBLE_DEVICES")))
    return devices.refusal(machine, seen, torch.version.cuda, torch.cuda.is_available(), want, torch.__version__)


def check_usable(want: str = "auto") -> None:
    """Refuse (one line) to start a run that would train on the CPU although GPUs are there."""
    why = refusal(want)
    if why:
        raise UserError(why)


def run_device(want: str, local_rank: int = 0, several: bool = False) -> torch.device:
    """The device a run trains on: ``train.device`` (``cpu`` on purpose), else the rank's GPU when
    torch can use one (refusing when it cannot use the GPUs NVML shows), else the CPU."""
    if want == "cpu":
        return torch.device("cpu")
    check_usable(want)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank) if several else torch.device("cuda")
