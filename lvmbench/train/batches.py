"""Images as tensors, and the stream of training batches indexed by step (so a run can resume exactly)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.samplers import ClassBalancedSampler


class ImageDataset(Dataset):
    """``(image tensor, label, index)`` for the samples of a split, through a transform."""

    def __init__(self, split, transform):
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        return self.transform(self.split.load(i)), int(self.split.labels[i]), i


class StepBatchSampler:
    """Batch ``k`` of an endless sequence of epochs, each a seeded shuffle of the training set
    (``instance``) or a class-balanced draw (``balanced``, Kang et al. 2020).

    Batches depend only on (seed, step), never on what ran before: resuming at ``start_step``
    yields exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, labels: np.ndarray, batch_size: int, kind: str, seed: int, steps: int, start_step: int = 0):
        self.labels, self.kind, self.seed = np.asarray(labels), kind, seed
        self.n = len(self.labels)
        self.batch_size = min(batch_size, self.n)
        self.per_epoch = self.n // self.batch_size
        self.steps, self.start_step = steps, start_step
        self._balanced = ClassBalancedSampler(self.labels, self.n, seed) if kind == "balanced" else None
        self._epoch, self._order = None, None

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self._epoch != epoch:
            if self._balanced is not None:
                self._order = self._balanced.global_indices(epoch)
            else:
                self._order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._epoch = epoch
        return self._order

    def batch(self, step: int) -> list[int]:
        epoch, k = divmod(step, self.per_epoch)
        order = self._epoch_order(epoch)
        return order[k * self.batch_size:(k + 1) * self.batch_size].tolist()

    def __iter__(self):
        for step in range(self.start_step, self.steps):
            yield self.batch(step)

    def __len__(self) -> int:
        return self.steps - self.start_step


def collate(items):
    images, labels, index = zip(*items)
    return torch.stack(images), torch.tensor(labels), torch.tensor(index)
