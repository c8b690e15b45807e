"""Datasets behind one interface (:class:`LTDataset`), built by name from a run spec."""
from __future__ import annotations

from .base import LTDataset, Split  # noqa: F401


def build_dataset(spec: dict) -> LTDataset:
    """Load the dataset a run spec names (``dataset``, ``data_root`` and the ``data.*`` keys) with the
    loader its registration names (:func:`lvmbench.catalog.register_dataset`)."""
    from ..catalog import dataset
    from ..methods.registry import resolve

    name = spec["dataset"]
    load = resolve(dataset(name).loader)
    return load(name=name, data_root=spec.get("data_root"), imbalance_ratio=spec["data.imbalance_ratio"],
                train_list=spec["data.train_list"], val_list=spec["data.val_list"],
                test_list=spec["data.test_list"], classnames=spec["data.classnames"],
                subsample_lt=spec.get("data.subsample_lt", False),
                allow_missing_classes=spec.get("data.allow_missing_classes", False),
                on_bad_image=spec.get("data.on_bad_image", "fail"), seed=0)
