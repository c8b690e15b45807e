"""What ingest checks before it stores a run, so that the store holds only what a run could have
written: its identity present and typed as the settings schema declares it (``config.IDENTITY``),
every number of the ``runs`` row of its column's type and range, every evaluation number finite
and in range, and per-class rows consistent with their evaluation. A run that fails is skipped,
named with the reason (never stored half, never stored with NULLs in their place).
"""
from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

from ..config import INT64, SCHEMA, check_identity, check_value, has_type
from ..errors import UserError
from .schema import TYPES


class Invalid(Exception):
    """A value a run directory holds that the store must not take; the message says which and why."""


IDENTITY_KEYS = ("dataset", "backbone", "method", "seed")
PERCENT = (0.0, 100.0)
# eval/<split>.json: the columns of ``evals`` (percentages), whether each must be present.
EVAL_PERCENTS = {"overall": True, "many": False, "medium": False, "few": False, "precision": False,
                 "recall": False, "f1": False, "worst_class": False}


def _is_int(value: Any) -> bool:
    return has_type(value, int)


def _is_number(value: Any) -> bool:
    return has_type(value, float)


def check_identity_fields(spec: dict) -> None:
    """The run's dataset, backbone, method and seed: present, of their types, the seed in range."""
    for key in IDENTITY_KEYS:
        if key not in spec or spec[key] is None:
            raise Invalid(f"spec.json has no {key!r}")
    try:
        check_identity({k: spec[k] for k in IDENTITY_KEYS})
    except UserError as exc:
        raise Invalid(f"spec.json: {str(exc).replace('--seed ', 'seed=')}") from None
    check_settings(spec)


# The schema without its choices: a stored run keeps a value that a later version stopped offering.
STORED_SCHEMA = {key: replace(param, choices=()) for key, param in SCHEMA.items()}


def check_settings(spec: dict) -> None:
    """Every setting of the spec that the schema declares: of its type, finite and in its range, an
    integer within the store's."""
    for key in SCHEMA.keys() & spec.keys():
        try:
            check_value(key, spec[key], STORED_SCHEMA)
        except UserError as exc:
            raise Invalid(f"spec.json: {exc}") from None


def check_row(row: dict, table: str = "runs") -> None:
    """Every integer and floating-point value of a row: of its column's type, an integer within the
    store's 64-bit range."""
    for col, value in row.items():
        kind = TYPES[table].get(col)
        if value is None or kind not in ("BIGINT", "DOUBLE"):
            continue
        if kind == "BIGINT" and not _is_int(value):
            raise Invalid(f"{table}.{col} = {value!r} is not an integer")
        if kind == "BIGINT" and not INT64[0] <= value <= INT64[1]:
            raise Invalid(f"{table}.{col} = {value} is out of range for the store (a 64-bit integer)")
        if kind == "DOUBLE" and not _is_number(value):
            raise Invalid(f"{table}.{col} = {value!r} is not a number")


def _percent(where: str, key: str, value: Any, required: bool) -> None:
    if value is None and not required:
        return
    if value is None:
        raise Invalid(f"{where} has no {key}")
    if not _is_number(value) or not math.isfinite(value) or not PERCENT[0] <= value <= PERCENT[1]:
        raise Invalid(f"{where}: {key} = {value!r} is not a percentage (a finite number in [0, 100])")


def _count(where: str, key: str, value: Any) -> None:
    if value is not None and (not _is_int(value) or not 0 <= value <= INT64[1]):
        raise Invalid(f"{where}: {key} = {value!r} is not a count (an integer >= 0)")


def _load(where: str, text: str, kind: type) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Invalid(f"{where} is not valid JSON ({exc})") from None
    if not isinstance(value, kind):
        raise Invalid(f"{where} is not a JSON {'object' if kind is dict else 'array'}")
    return value


def check_evaluation(where: str, text: str) -> dict:
    """``eval/<split>.json``: a JSON object whose accuracies are finite percentages (overall present)
    and whose ``n_samples`` is a count; returns it."""
    evaluation = _load(where, text, dict)
    for key, required in EVAL_PERCENTS.items():
        _percent(where, key, evaluation.get(key), required)
    _count(where, "n_samples", evaluation.get("n_samples"))
    return evaluation


def check_per_class(where: str, text: str, evaluation: dict | None) -> None:
    """``eval/per_class_<split>.json``: one object per class, each class once, accuracies percentages,
    counts counts, and within the evaluation: no more test samples than it counted, no class below its
    worst class."""
    rows = _load(where, text, list)
    seen: set[int] = set()
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise Invalid(f"{where}: row {i} is not a JSON object")
        class_id = row.get("class_id")
        if not _is_int(class_id) or not 0 <= class_id <= INT64[1]:
            raise Invalid(f"{where}: row {i}: class_id = {class_id!r} is not a class index (an integer >= 0)")
        if class_id in seen:
            raise Invalid(f"{where}: class {class_id} appears twice")
        seen.add(class_id)
        _percent(f"{where}: class {class_id}", "accuracy", row.get("accuracy"), required=False)
        for key in ("n_train", "n_test"):
            _count(f"{where}: class {class_id}", key, row.get(key))
    evaluation = evaluation or {}
    tested = sum(row.get("n_test") or 0 for row in rows)
    if evaluation.get("n_samples") is not None and tested > evaluation["n_samples"]:
        raise Invalid(f"{where}: its classes hold {tested} test samples, more than the evaluation's "
                      f"{evaluation['n_samples']}")
    accuracies = [row["accuracy"] for row in rows if row.get("accuracy") is not None]
    worst = evaluation.get("worst_class")
    if worst is not None and accuracies and min(accuracies) < worst - 1e-6:
        raise Invalid(f"{where}: a class has accuracy {min(accuracies)}, below the evaluation's worst class "
                      f"({worst})")
