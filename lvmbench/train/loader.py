"""How images reach a step: the DataLoader's workers, and the time a step waits for its data.

On a GPU the frozen tower encodes thousands of images a second, so every core the process may use
decodes and augments (one is left to the main process, which drives the GPU); on a CPU the tower
needs the cores itself and images load in the training process. ``lvmbench bench --loader`` measures
what a core supplies.
"""
from __future__ import annotations

import os
import time

PREFETCH = 4  # batches each worker keeps ready (DataLoader's default is 2)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a scheduler or a parent that divides a
    machine between runs sets it), else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def data_workers(setting: int, device_type: str) -> int:
    """DataLoader worker processes: ``train.num_workers``, or with ``-1`` (auto) on a GPU every usable
    core but one (the main process's); on a CPU none (images load in the training process)."""
    if setting >= 0:
        return setting
    if device_type != "cuda":
        return 0
    return max(1, usable_cores() - 1)


def loader_options(workers: int, device_type: str) -> dict:
    """DataLoader keywords: workers kept alive between epochs and prefetching, pinned memory on a GPU."""
    options = {"num_workers": workers, "pin_memory": device_type == "cuda", "persistent_workers": workers > 0}
    if workers > 0:
        options["prefetch_factor"] = PREFETCH
    return options


def timed(iterable):
    """``(item, seconds)``: each item of ``iterable`` with the time the consumer waited for it."""
    it = iter(iterable)
    while True:
        t0 = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            return
        yield item, time.perf_counter() - t0


class WaitLog:
    """A run's loader wait: the seconds each step waited for its data, as the mean since the last
    logged record (:meth:`window`) and over the run (:attr:`mean`)."""

    def __init__(self):
        self.total_s, self.steps, self._window_s, self._window_steps = 0.0, 0, 0.0, 0

    def add(self, seconds: float) -> None:
        self.total_s += seconds
        self.steps += 1
        self._window_s += seconds
        self._window_steps += 1

    def window(self) -> float | None:
        """Mean seconds per step since the last call (None when no step waited on a loader since)."""
        if not self._window_steps:
            return None
        mean = self._window_s / self._window_steps
        self._window_s, self._window_steps = 0.0, 0
        return mean

    @property
    def mean(self) -> float | None:
        return self.total_s / self.steps if self.steps else None
