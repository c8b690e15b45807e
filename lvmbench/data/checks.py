"""Listed image files that are not there: found before anything trains, by listing each folder once.

Listing folders is cheap even for ImageNet-LT's 1,000 (a ``stat`` per image is not, on a network
file system). ``data.on_bad_image=fail`` stops at the first missing file, naming it and the split
file's line; ``skip`` drops every missing file and records it in ``LTDataset.skipped``.
"""
from __future__ import annotations

import os
from dataclasses import replace

import numpy as np

from .base import LTDataset, MissingImage, Split

SPLITS = ("train", "val", "test")


def missing_mask(split: Split) -> np.ndarray:
    """True where a listed image file does not exist (in-memory splits have none)."""
    if isinstance(split.samples, np.ndarray) or not len(split):
        return np.zeros(len(split), dtype=bool)
    listings: dict[str, set[str]] = {}
    mask = np.zeros(len(split), dtype=bool)
    for i in range(len(split)):
        folder, name = os.path.split(split.path(i))
        if folder not in listings:
            try:
                listings[folder] = set(os.listdir(folder or "."))
            except OSError:
                listings[folder] = set()
        mask[i] = name not in listings[folder]
    return mask


def check_listed_images(dataset: LTDataset, on_bad: str) -> LTDataset:
    """Fail on the first missing image file (``fail``), or return the dataset without them (``skip``)."""
    changes, skipped = {}, list(dataset.skipped)
    for name in SPLITS:
        split = getattr(dataset, name)
        if split is None:
            continue
        mask = missing_mask(split)
        if not mask.any():
            continue
        if on_bad == "fail":
            i = int(np.flatnonzero(mask)[0])
            raise MissingImage(f"image file missing: {split.describe(i)}; {int(mask.sum())} of {len(split)} "
                               f"{name} images are missing (--set data.on_bad_image=skip to skip them)")
        skipped += [{"image": str(split.path(i)), "error": "missing"} for i in np.flatnonzero(mask)]
        changes[name] = split.subset(np.flatnonzero(~mask))
    return replace(dataset, **changes, skipped=skipped) if changes else dataset
