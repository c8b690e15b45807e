"""Classification metrics for long-tailed evaluation.

Every metric except ``n_samples`` is in percent (0-100), precision/recall/F1
included.

Conventions, used consistently by every metric here:

* A class is *present* when it has at least one sample in the evaluated
  targets. Per-class accuracy (recall) is only defined for present classes.
* many / medium / few are the mean per-class accuracy over the present classes
  of that shot group (``None`` when the group has no present class). Shot
  groups come from the *training* counts: many n > 100, medium 20 <= n <= 100,
  few n < 20.
* precision, recall and F1 are macro averages over the present classes
  (scikit-learn, ``labels`` = present classes, ``zero_division=0``). So macro
  recall equals the mean per-class accuracy (balanced accuracy), and a split
  that lacks some classes is not penalised for them; predictions of absent
  classes still count as errors of the true class. On a split containing
  every class this is the usual macro average over all C classes.
* worst_class is the minimum per-class accuracy over present classes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import precision_recall_fscore_support

from .shots import SHOT_FEW, SHOT_MANY

__all__ = ["SHOT_MANY", "SHOT_FEW", "EvalResult", "shot_groups", "compute_metrics"]


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def shot_groups(train_counts) -> np.ndarray:
    """'many' for n > 100, 'medium' for 20 <= n <= 100, 'few' for n < 20."""
    n = _to_numpy(train_counts)
    return np.where(n > SHOT_MANY, "many", np.where(n < SHOT_FEW, "few", "medium"))


@dataclass
class EvalResult:
    """Metrics of one evaluation; see the module docstring for definitions."""

    overall: float
    many: float | None
    medium: float | None
    few: float | None
    precision: float
    recall: float
    f1: float
    worst_class: float
    n_samples: int
    per_class: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict of the summary metrics (``per_class`` left out)."""
        out = asdict(self)
        out.pop("per_class")
        return out


def compute_metrics(preds, targets, train_counts,
                    class_names: Sequence[str] | None = None) -> EvalResult:
    """Top-1, shot-group, macro and per-class metrics of integer predictions.

    ``preds`` and ``targets`` are 1-D int arrays or tensors with values in
    [0, C), C = len(train_counts).
    """
    preds = _to_numpy(preds).astype(np.int64).ravel()
    targets = _to_numpy(targets).astype(np.int64).ravel()
    train_counts = _to_numpy(train_counts).ravel()
    num_classes = train_counts.size
    if preds.shape != targets.shape:
        raise ValueError(f"preds and targets differ in length: {preds.size} vs {targets.size}")
    if targets.size == 0:
        raise ValueError("cannot compute metrics of an empty split")
    for name, arr in (("preds", preds), ("targets", targets)):
        if arr.min() < 0 or arr.max() >= num_classes:
            raise ValueError(f"{name} must lie in [0, {num_classes})")
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")

    confusion = np.bincount(targets * num_classes + preds, minlength=num_classes**2)
    confusion = confusion.reshape(num_classes, num_classes)  # rows: true, cols: predicted
    n_test = confusion.sum(axis=1)
    present = n_test > 0
    accuracy = np.full(num_classes, np.nan)
    accuracy[present] = 100.0 * np.diag(confusion)[present] / n_test[present]

    groups = shot_groups(train_counts)
    group_acc = {}
    for group in ("many", "medium", "few"):
        sel = present & (groups == group)
        group_acc[group] = float(accuracy[sel].mean()) if sel.any() else None

    precision, recall, f1, _ = precision_recall_fscore_support(
        targets, preds, labels=np.flatnonzero(present), average="macro", zero_division=0
    )
    per_class = [
        {
            "class_id": c,
            "class_name": class_names[c] if class_names is not None else str(c),
            "n_train": int(train_counts[c]),
            "accuracy": float(accuracy[c]) if present[c] else None,
            "n_test": int(n_test[c]),
            "n_correct": int(confusion[c, c]),
        }
        for c in range(num_classes)
    ]
    return EvalResult(
        overall=100.0 * float(np.trace(confusion)) / targets.size,
        many=group_acc["many"],
        medium=group_acc["medium"],
        few=group_acc["few"],
        precision=100.0 * float(precision),
        recall=100.0 * float(recall),
        f1=100.0 * float(f1),
        worst_class=float(accuracy[present].min()),
        n_samples=int(targets.size),
        per_class=per_class,
    )
