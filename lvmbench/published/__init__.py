"""The published numbers lvmbench's tables compare against, shipped as data with their source.

``wang2023.json``: the study's Tables 1–6 (accuracies, P/R/F1 per method, dataset, backbone and
weights) and Table 8 (training cost), transcribed from Wang et al. 2023 (arXiv:2304.01457v2).
``shi2024.json``: LIFT's main results (Shi et al., ICML 2024). Each file says where its numbers come
from; each table entry names its table.

A table cell has a published counterpart when the dataset, method (with its loss), backbone and
weights match, and, for the study's numbers, the recipe is ``paper`` (what the study's code ran).
:func:`counterpart` is that rule; ``lvmbench table main --published`` and the UI's Compare use it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .. import catalog

FILES = {"wang2023": "paper", "shi2024": None}  # file → the recipe its numbers were made with (None: any)
SHORT = {"wang2023": "Wang 2023", "shi2024": "Shi 2024"}  # as a table row names its source: "Wang 2023 T1"
DEFAULT_PRETRAINED = "openai"


@dataclass(frozen=True)
class Published:
    """One published row: where it comes from and its figures (accuracy or cost field → value)."""

    source: str  # short, as a table row shows it: "Wang 2023 T1"
    row: str  # the row's name in the paper
    values: dict = field(default_factory=dict)
    cite: str = ""  # the paper and table in full, as a table's note names it


@lru_cache(maxsize=None)
def sources() -> dict[str, dict]:
    """Every published file, by name (``wang2023``, ``shi2024``)."""
    return {name: json.loads((Path(__file__).parent / f"{name}.json").read_text()) for name in FILES}


def _matches(entry: dict, spec: dict, method: str) -> bool:
    info = catalog.METHODS.get(method)
    if "kind" in entry:
        if info is None or info.kind != entry["kind"]:
            return False
    elif entry.get("method") != method:
        return False
    loss = entry.get("loss", info.loss if info else None)
    if "kind" not in entry and spec.get("loss") != loss:
        return False
    return all(spec.get(k) == v for k, v in entry.get("settings", {}).items())


def counterpart(kind: str, dataset: str, method: str, backbone: str, pretrained: str | None, recipe: str | None,
                spec: dict) -> Published | None:
    """The published row a table cell compares with: ``kind`` ``accuracy`` (Tables 1–6, LIFT) or
    ``cost`` (Table 8), for a run of ``method`` on ``dataset`` with ``backbone`` and weights
    ``pretrained`` under ``recipe`` (its resolved ``spec`` decides the loss and settings); None when
    nothing published matches."""
    pretrained = pretrained or DEFAULT_PRETRAINED
    for name, made_with in FILES.items():
        if made_with is not None and recipe != made_with:
            continue
        data = sources()[name]
        tables = data.get(kind, [])
        for table in tables if isinstance(tables, list) else [tables]:
            if table["dataset"] != dataset or table.get("pretrained", DEFAULT_PRETRAINED) != pretrained:
                continue
            for entry in table["rows"]:
                if entry.get("backbone", table.get("backbone")) == backbone and _matches(entry, spec, method):
                    return Published(f"{SHORT[name]} T{table['table'].split()[-1]}", entry["row"], entry["values"],
                                     f"{data['cite']}, {table['table']}")
    return None


def datasets() -> list[str]:
    """The datasets some published number is about."""
    found = set()
    for data in sources().values():
        for kind in ("accuracy", "cost"):
            tables = data.get(kind, [])
            found |= {t["dataset"] for t in (tables if isinstance(tables, list) else [tables])}
    return sorted(found)
