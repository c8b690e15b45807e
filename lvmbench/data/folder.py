"""An ImageFolder tree: ``root/train/<class>/…``, ``root/test/<class>/…`` and optionally ``root/val``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import LTDataset, Split, longtail_indices, require_path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _scan(folder: Path, classes: list[str], root: Path) -> Split:
    samples, labels = [], []
    for c, name in enumerate(classes):
        for f in sorted((folder / name).glob("*")) if (folder / name).is_dir() else []:
            if f.suffix.lower() in IMAGE_SUFFIXES:
                samples.append(str(f.relative_to(root)))
                labels.append(c)
    return Split(samples, np.asarray(labels, dtype=np.int64), root=root)


def load(name: str, data_root: str | None, imbalance_ratio: float = 100.0, subsample_lt: bool = False,
         seed: int = 0, **_) -> LTDataset:
    if not data_root:
        raise UserError("dataset folder needs --data-root (a folder with train/ and test/ class folders)")
    root = require_path(Path(data_root).expanduser(), "data root")
    train_dir = require_path(root / "train", "train folder")
    test_dir = require_path(root / "test", "test folder")
    classes = sorted(d.name for d in train_dir.iterdir() if d.is_dir())
    if not classes:
        raise UserError(f"no class folders in {train_dir}")
    train = _scan(train_dir, classes, root)
    if subsample_lt:
        keep = longtail_indices(train.labels, imbalance_ratio, np.random.default_rng(seed))
        train = Split([train.samples[i] for i in keep], train.labels[keep], root=root)
    val = _scan(root / "val", classes, root) if (root / "val").is_dir() else None
    return LTDataset(name, len(classes), train=train, val=val, test=_scan(test_dir, classes, root),
                     class_names=[c.replace("_", " ") for c in classes]).check()
