"""Class-balanced sampling for long-tailed training."""

from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np
from torch.utils.data import Sampler

__all__ = ["ClassBalancedSampler", "StudyWeightedSampler", "STUDY_EPOCHS"]

# The study's generator (scripts/config_generator_imb_clip.py) sets ``epoch: 32``: its samplers draw
# ``num_train_iter // 32`` batches per epoch.
STUDY_EPOCHS = 32


class StudyWeightedSampler:
    """The study's "class-balanced" sampler, as its code runs it.

    Imbalance-VLM's ``WeightedDistributedSampler`` (``imblearn/datasets/samplers/sampler.py``) gives
    sample i the weight 1 / n_{y_i} but draws with ``torch.multinomial(..., replacement=False)``: an
    epoch of ``epoch_samples`` draws is a concatenation of weighted random permutations of the whole
    training set, the last one cut short. Every sample appears once per permutation, so the class
    shares stay close to instance sampling; only the cut permutation leans towards the tail.

    Drawing all n items one at a time, each with probability proportional to its weight among those
    left, orders them as the ascending race E_i / w_i with E_i ~ Exp(1); that is how a permutation
    is drawn here (the same distribution as the study's, not its random stream).
    """

    def __init__(self, labels, epoch_samples: int, seed: int = 0):
        labels = np.asarray(labels).ravel()
        if labels.size == 0 or epoch_samples <= 0:
            raise ValueError("need labels and epoch_samples > 0")
        self.weights = 1.0 / np.bincount(labels)[labels]
        self.n, self.epoch_samples, self.seed = labels.size, int(epoch_samples), int(seed)

    def weighted_permutation(self, rng: np.random.Generator) -> np.ndarray:
        return np.argsort(rng.standard_exponential(self.n) / self.weights, kind="stable")

    def global_indices(self, epoch: int) -> np.ndarray:
        """The ``epoch_samples`` dataset indices of ``epoch``."""
        rng = np.random.default_rng([self.seed, epoch])
        repeats, remain = divmod(self.epoch_samples, self.n)
        parts = [self.weighted_permutation(rng) for _ in range(repeats)]
        if remain:
            parts.append(self.weighted_permutation(rng)[:remain])
        return np.concatenate(parts)


class ClassBalancedSampler(Sampler[int]):
    """Draw a class uniformly at random, then one of its instances uniformly.

    Class-balanced sampling as in Kang et al., "Decoupling Representation and
    Classifier for Long-Tailed Recognition", ICLR 2020. Only classes that
    occur in ``labels`` are drawn; draws are with replacement.

    The global sequence of an epoch depends only on ``(seed, epoch)``; call
    :meth:`set_epoch` before each epoch. It holds ``len(self) * num_replicas``
    draws (``num_samples`` rounded up to a multiple of ``num_replicas``), and
    rank ``r`` iterates ``global[r::num_replicas]``, so the ranks' slices
    partition it.

    Resuming: :meth:`state_dict` records the epoch and how many indices of the
    epoch this rank has already produced; after :meth:`load_state_dict` the
    next iteration continues from there. When a ``DataLoader`` prefetches,
    pass the number of samples the training loop has actually consumed as
    ``state_dict(consumed=...)``. ``len(self)`` is always the full per-rank
    epoch length.
    """

    def __init__(self, labels, num_samples: int, seed: int = 0,
                 num_replicas: int | None = None, rank: int | None = None):
        super().__init__()
        labels = np.asarray(labels).ravel()
        if labels.size == 0:
            raise ValueError("labels is empty")
        if num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        num_replicas = 1 if num_replicas is None else int(num_replicas)
        rank = 0 if rank is None else int(rank)
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"invalid rank {rank} for {num_replicas} replicas")

        # Instances grouped by class: class k owns order[offsets[k]:offsets[k] + sizes[k]].
        self._order = np.argsort(labels, kind="stable")
        _, self._sizes = np.unique(labels, return_counts=True)
        self._offsets = np.concatenate([[0], np.cumsum(self._sizes)[:-1]])

        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.num_replicas = num_replicas
        self.rank = rank
        self.per_rank = math.ceil(self.num_samples / num_replicas)
        self.epoch = 0
        self._position = 0

    def __len__(self) -> int:
        return self.per_rank

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; a change of epoch restarts from its beginning."""
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self._position = 0

    def global_indices(self, epoch: int | None = None) -> np.ndarray:
        """The whole sequence of dataset indices of ``epoch`` (all ranks)."""
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch])
        total = self.per_rank * self.num_replicas
        classes = rng.integers(len(self._sizes), size=total)
        within = rng.integers(self._sizes[classes])
        return self._order[self._offsets[classes] + within]

    def __iter__(self) -> Iterator[int]:
        indices = self.global_indices()[self.rank::self.num_replicas]
        start = self._position
        for i in range(start, self.per_rank):
            self._position = i + 1
            yield int(indices[i])
        self._position = 0

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        """Epoch and position in it (``consumed`` overrides the position)."""
        position = self._position if consumed is None else int(consumed)
        return {"seed": self.seed, "epoch": self.epoch, "position": position,
                "num_samples": self.num_samples, "num_replicas": self.num_replicas}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the sampler must be built the same way."""
        for key in ("seed", "num_samples", "num_replicas"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(f"state has {key}={state[key]}, sampler has {getattr(self, key)}")
        position = int(state["position"])
        if not 0 <= position <= self.per_rank:
            raise ValueError(f"position {position} outside [0, {self.per_rank}]")
        self.epoch = int(state["epoch"])
        self._position = position
