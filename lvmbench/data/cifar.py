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


def _unpickle(path: Path, name: str, keys: tuple[bytes, ...]) -> dict:
    """One file of the python version of CIFAR: a pickled dict holding ``keys``, or one clear error."""
    expected = f"a pickled dict with {', '.join(k.decode() for k in keys)} (the python version of {name[:-3].upper()})"
    try:
        with open(require_path(path, "CIFAR file"), "rb") as f:
            found = pickle.load(f, encoding="bytes")
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign pickle fails in many ways
        raise UserError(f"{path}: cannot be unpickled ({type(exc).__name__}); expected {expected}") from None
    if not isinstance(found, dict) or not all(k in found for k in keys):
        what = f"keys {sorted(map(str, found))[:6]}" if isinstance(found, dict) else type(found).__name__
        raise UserError(f"{path}: found {what}; expected {expected}")
    return found


def _images(path: Path, part: dict, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    data, labels = np.asarray(part[b"data"]), np.asarray(part[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise UserError(f"{path}: data is {data.dtype} {list(data.shape)} with {len(labels)} labels; expected "
                        f"uint8 [N, 3072] (32x32 RGB) with N labels")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)


def load(name: str, data_root: str | None, imbalance_ratio: float = 100.0, seed: int = 0, **_) -> LTDataset:
    if not data_root:
        raise UserError(f"dataset {name} needs --data-root (the folder that holds {FOLDERS[name][0]}/)")
    folder, train_files, test_file, meta_file, label_key, names_key = FOLDERS[name]
    base = Path(data_root).expanduser()
    base = base if base.name == folder else base / folder
    require_path(base, f"{name} folder")

    def read(files):
        parts = [_images(base / f, _unpickle(base / f, name, (b"data", label_key)), label_key) for f in files]
        return np.ascontiguousarray(np.concatenate([x for x, _ in parts])), np.concatenate([y for _, y in parts])

    train_x, train_y = read(train_files)
    test_x, test_y = read([test_file])
    keep = longtail_indices(train_y, imbalance_ratio, np.random.default_rng(seed))
    meta = base / meta_file
    names = [n.decode().replace("_", " ") if isinstance(n, bytes) else str(n)
             for n in _unpickle(meta, name, (names_key,))[names_key]]
    return LTDataset(name, len(names), train=Split(train_x[keep], train_y[keep]),
                     test=Split(test_x, test_y), class_names=names, names_from=str(meta)).check()
