"""Datasets behind one interface (:class:`LTDataset`), built by name from a run spec."""
from __future__ import annotations

from ..errors import unknown
from .base import LTDataset, Split  # noqa: F401


def build_dataset(spec: dict) -> LTDataset:
    """Load the dataset a run spec names (``dataset``, ``data_root`` and the ``data.*`` keys)."""
    from . import cifar, folder, mnist_lt, split_file
    from .checks import check_listed_images

    name = spec["dataset"]
    kwargs = dict(data_root=spec.get("data_root"), imbalance_ratio=spec["data.imbalance_ratio"],
                  train_list=spec["data.train_list"], val_list=spec["data.val_list"],
                  test_list=spec["data.test_list"], classnames=spec["data.classnames"],
                  subsample_lt=spec.get("data.subsample_lt", False),
                  allow_missing_classes=spec.get("data.allow_missing_classes", False), seed=0)
    if name == "mnist-lt":
        return mnist_lt.load(**kwargs)
    if name in split_file.LAYOUTS:
        return check_listed_images(split_file.load(name, **kwargs), spec["data.on_bad_image"])
    if name in cifar.FOLDERS:
        return cifar.load(name, **kwargs)
    if name == "folder":
        return folder.load(name, **kwargs)
    raise unknown("dataset", name, ["mnist-lt", "folder", *split_file.LAYOUTS, *cifar.FOLDERS])
