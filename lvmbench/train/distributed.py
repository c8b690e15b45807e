"""Data-parallel training over the processes torchrun starts (PyTorch DDP, Li et al. 2020,
"PyTorch Distributed: Experiences on Accelerating Data Parallel Training").

One process per GPU (NCCL) or per CPU share (gloo). Each rank trains on its own slice of the
same global batch, so the averaged gradient is the one-process gradient of that batch and
class-balanced sampling stays correct; rank 0 alone evaluates and writes the run directory.
A single process (no ``WORLD_SIZE``) takes none of these paths.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
from torch import nn

# Ranks other than 0 wait in the next gradient all-reduce while rank 0 evaluates.
TIMEOUT = timedelta(hours=3)


@dataclass(frozen=True)
class Dist:
    """This process's place among the run's processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def device(self) -> torch.device:
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", self.local_rank) if self.active else torch.device("cuda")

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The model to train with: DDP over its trainable parameters when several processes run."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The average of a scalar over the ranks (the loss of the whole global batch)."""
        if not self.active:
            return value
        value = value.detach().clone()
        torch.distributed.all_reduce(value)
        return value / self.world


def setup() -> Dist:
    """Join the process group torchrun describes in the environment (nothing for one process)."""
    dist = Dist(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                int(os.environ.get("LOCAL_RANK", 0)))
    if dist.active and not torch.distributed.is_initialized():
        on_gpu = torch.cuda.is_available()
        if on_gpu:
            torch.cuda.set_device(dist.local_rank)
        torch.distributed.init_process_group("nccl" if on_gpu else "gloo", timeout=TIMEOUT)
    return dist


def teardown() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
