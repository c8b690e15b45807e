"""A dataset's classes in a few numbers: how many, how many have training images, and how many fall in
each shot group as the evaluation groups them. Recorded in a run's spec as ``classes.*``."""
from __future__ import annotations

from .base import LTDataset


def class_summary(dataset: LTDataset) -> dict[str, int]:
    """``classes.total``, ``classes.with_train`` and ``classes.many|medium|few`` (``evaluate.shot_groups``:
    a class without training images counts as few)."""
    from ..evaluate import shot_groups

    counts = dataset.train_counts
    groups = shot_groups(counts)
    return {"classes.total": int(dataset.num_classes), "classes.with_train": int((counts > 0).sum()),
            **{f"classes.{g}": int((groups == g).sum()) for g in ("many", "medium", "few")}}


def describe_classes(summary: dict) -> str:
    """``1000 classes (5 with training images): many 0, medium 2, few 998``, from ``classes.*``."""
    total = summary["classes.total"]
    covered = summary.get("classes.with_train", total)
    partial = f" ({covered} with training images)" if covered < total else ""
    return (f"{total} classes{partial}: many {summary['classes.many']}, medium {summary['classes.medium']}, "
            f"few {summary['classes.few']}")
