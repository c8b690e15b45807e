"""CIFAR-10-LT and CIFAR-100-LT from the standard python folders, exponential imbalance (Cao et al. 2019)."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import LTDataset, Split, longtail_indices, require_path

FOLDERS = {"cifar10-lt": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch",
                          "batches.meta", b"labels", b"label_names"),
           "cifar100-lt": ("cifar-100-python", ["train"], "test", "meta", b"fine_labels", b"fine_label_names")}


def _unpickle(path: Path) -> dict:
    with open(require_path(path, "CIFAR file"), "rb") as f:
        return pickle.load(f, encoding="bytes")


def load(name: str, data_root: str | None, imbalance_ratio: float = 100.0, seed: int = 0, **_) -> LTDataset:
    if not data_root:
        raise UserError(f"dataset {name} needs --data-root (the folder that holds {FOLDERS[name][0]}/)")
    folder, train_files, test_file, meta_file, label_key, names_key = FOLDERS[name]
    base = Path(data_root).expanduser()
    base = base if base.name == folder else base / folder
    require_path(base, f"{name} folder")

    def read(files):
        parts = [_unpickle(base / f) for f in files]
        images = np.concatenate([p[b"data"] for p in parts]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return np.ascontiguousarray(images), np.concatenate([p[label_key] for p in parts]).astype(np.int64)

    train_x, train_y = read(train_files)
    test_x, test_y = read([test_file])
    keep = longtail_indices(train_y, imbalance_ratio, np.random.default_rng(seed))
    names = [n.decode().replace("_", " ") for n in _unpickle(base / meta_file)[names_key]]
    return LTDataset(name, len(names), train=Split(train_x[keep], train_y[keep]),
                     test=Split(test_x, test_y), class_names=names).check()
