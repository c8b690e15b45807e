"""Images as tensors, and the stream of training batches indexed by step (so a run can resume exactly)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.base import BadImage, MissingImage
from ..data.samplers import STUDY_EPOCHS, ClassBalancedSampler, StudyWeightedSampler
from ..errors import UserError

AUGMENT_STREAM = 1  # tells the augmentation seeds apart from the shuffling ones, which use (seed, epoch)


class ImageDataset(Dataset):
    """``(image tensor, label, index)`` for the samples of a split, through a transform.

    An item is an index, or ``(index, seed)``: then the transform's random draws (crop, flip) come
    from that seed alone, so augmentation does not depend on worker processes or on what ran
    before (a resumed run sees the same views). With ``on_bad`` (a callable), an image that is
    missing or cannot be decoded is reported to it as ``{image, error}`` and the item is dropped
    (``data.on_bad_image=skip``); ``collate`` leaves it out of its batch. ``decode``: ``data.decode``,
    how images are read (PIL images, or uint8 tensors for a ``transforms.v2`` transform).
    """

    def __init__(self, split, transform, on_bad=None, decode: str = "pil"):
        self.split, self.transform, self.on_bad, self.decode = split, transform, on_bad, decode

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, item):
        i, seed = item if isinstance(item, tuple) else (item, None)
        image = self.read(i)
        if image is None:
            return None
        return seeded(self.transform, image, seed), int(self.split.labels[i]), i

    def read(self, i: int):
        """Sample ``i`` as ``decode`` reads it; None when it is missing or cannot be decoded and
        ``on_bad`` takes the report (an error otherwise)."""
        try:
            return self.split.load(i, self.decode)
        except (BadImage, MissingImage) as exc:
            self.skip(i, exc)
            return None

    def skip(self, i: int, exc: Exception) -> None:
        """Report sample ``i``'s unreadable image to ``on_bad``, or raise ``exc`` without one."""
        if self.on_bad is None:
            raise exc
        self.on_bad({"image": str(self.split.path(i)), "error": str(exc)})


def seeded(transform, image, seed: int | None):
    """``transform(image)``, its random draws (crop, flip) from ``seed`` alone when one is given; the
    global RNG is left as it was."""
    if seed is None:
        return transform(image)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return transform(image)


class StepBatchSampler:
    """Batch ``k`` of an endless sequence of epochs, each a seeded shuffle of the training set
    (``instance``) or a class-balanced draw (``balanced``, Kang et al. 2020): ``balanced="uniform"``
    draws a class uniformly, then one of its samples; ``balanced="study"`` is the study's sampler
    (:class:`StudyWeightedSampler`, weighted draws without replacement, 32 epochs per run).

    Batches depend only on (seed, step), never on what ran before: resuming at ``start_step``
    yields exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, labels: np.ndarray, batch_size: int, kind: str, seed: int, steps: int, start_step: int = 0,
                 rank: int = 0, world: int = 1, balanced: str = "uniform"):
        self.labels, self.kind, self.seed = np.asarray(labels), kind, seed
        self.n = len(self.labels)
        self.batch_size = min(batch_size, self.n)
        self.per_epoch = self.n // self.batch_size
        self.steps, self.start_step = steps, start_step
        self.rank, self.world = rank, world  # data-parallel: this rank iterates batch[rank::world]
        self._balanced = None
        if kind == "balanced" and balanced == "study":
            self.per_epoch = max(1, steps // STUDY_EPOCHS)
            self._balanced = StudyWeightedSampler(self.labels, self.per_epoch * self.batch_size, seed)
        elif kind == "balanced":
            self._balanced = ClassBalancedSampler(self.labels, self.n, seed)
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

    def seeded_batch(self, step: int) -> list[tuple[int, int]]:
        """Batch ``step`` as ``(index, augmentation seed)`` pairs; the seeds depend on (seed, step) only."""
        batch = self.batch(step)
        seeds = np.random.default_rng([self.seed, step, AUGMENT_STREAM]).integers(0, 2**63 - 1, len(batch))
        return list(zip(batch, seeds.tolist()))

    def __iter__(self):
        for step in range(self.start_step, self.steps):
            yield self.seeded_batch(step)[self.rank::self.world]

    def __len__(self) -> int:
        return self.steps - self.start_step


def collate(items):
    items = [item for item in items if item is not None]  # images skipped by data.on_bad_image=skip
    if not items:
        raise UserError("no image of a batch could be read (data.on_bad_image=skip); see bad_images.jsonl")
    images, labels, index = zip(*items)
    return torch.stack(images), torch.tensor(labels), torch.tensor(index)
