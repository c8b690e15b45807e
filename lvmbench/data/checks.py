"""Listed image files that are not there: found before anything trains, by listing each folder once.

Listing folders is cheap even for iNaturalist 2018's 8,142 (a ``stat`` per image is not, on a network
file system), and the folders are listed by a pool of threads (a network file system answers them
in parallel). A verified listing is remembered (:mod:`lvmbench.data.listing`): a second run on the
same split lists only the folders that changed since. ``data.on_bad_image=fail`` stops at the
first missing file, naming it and the split file's line; ``skip`` drops every missing file and
records it in ``LTDataset.skipped``.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from . import listing
from .base import LTDataset, MissingImage, Split

SPLITS = ("train", "val", "test")


def _list(folder: str) -> set[str]:
    try:
        return set(os.listdir(folder or "."))
    except OSError:
        return set()


def missing_mask(split: Split) -> np.ndarray:
    """True where a listed image file does not exist (in-memory splits have none)."""
    if isinstance(split.samples, np.ndarray) or not len(split):
        return np.zeros(len(split), dtype=bool)
    parts = [str(sample).rpartition("/") for sample in split.samples]  # (folder, "/", file name)
    heads = list(dict.fromkeys(head for head, _, _ in parts))
    root = str(split.root) if split.root else ""
    folders = [os.path.join(root, head) for head in heads]
    # the folders' times before listing them: a change made while listing shows at the next run
    record, states = listing.key(split), listing.folder_states(folders)
    mask, stale = listing.recall(record, states, len(split))
    if not stale:
        return mask
    with ThreadPoolExecutor(min(listing.THREADS, len(stale))) as pool:
        fresh = dict(zip([heads[i] for i in stale], pool.map(_list, [folders[i] for i in stale])))
    for i, (head, _, name) in enumerate(parts):
        if head in fresh:
            mask[i] = name not in fresh[head]
    listing.remember(record, states, mask)
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
