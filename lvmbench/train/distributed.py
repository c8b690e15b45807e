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

# How long a collective may wait before the run fails instead of hanging: ranks other than 0 wait in
# the next step while rank 0 evaluates the val split (seconds from the feature cache, minutes with
# eval.tte on a large split). ``LVMBENCH_DIST_TIMEOUT_MIN`` changes it.
TIMEOUT = timedelta(minutes=float(os.environ.get("LVMBENCH_DIST_TIMEOUT_MIN", "30")))


class FailedOnAnotherRank(RuntimeError):
    """A fused member's step failed on another rank: every rank drops the member at the same step."""


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

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The model to train with: DDP over its trainable parameters when several processes run."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def agree(self, loss: torch.Tensor | None, failure: BaseException | None, device: torch.device) -> torch.Tensor:
        """The average of a scalar loss over the ranks (the loss of the whole global batch), in one
        all-reduce that also counts the ranks whose step failed (``failure``, with ``loss`` None): then
        every rank raises (the failing one its own error) before any gradient all-reduce, so that the
        ranks drop the member together instead of pairing mismatched collectives or hanging."""
        if not self.active:
            if failure is not None:
                raise failure
            return loss
        value = loss.detach().float().reshape(()) if loss is not None else torch.zeros((), device=device)
        packed = torch.stack([value, torch.tensor(float(failure is not None), device=value.device)])
        torch.distributed.all_reduce(packed)
        if failure is not None:
            raise failure
        if packed[1].item() > 0:
            raise FailedOnAnotherRank(f"{int(packed[1].item())} other rank(s) failed this step (see their lines in "
                                      "stdout.log)")
        return packed[0] / self.world


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
