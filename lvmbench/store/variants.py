"""The ``Variant`` column: what tells the rows of one table apart besides their method, recipe and backbone.

A setting is named when some row shown chose it (its value differs from what that row's dataset,
method and recipe give by default, ``config.defaults``), for every row that has the setting, so that
a 30-iteration ``focal`` next to a 300-iteration ``ce`` reads ``iters=30`` and ``iters=300``; but never
what the row's Method already says (``loss=ce`` on a ``ce`` row). A setting
every row shares with one value is said once, in a note (``all rows: iters=30``). Names are short
(``iters``, ``lr``, ``γ``); a value is never ``None``: a loss term that is off reads ``off``, a
setting left to the dataset reads ``default``.
"""
from __future__ import annotations

import json
from typing import Iterable

from .. import catalog, config
from ..errors import UserError

# Told apart by other columns (Method, Backbone, Dataset, Seeds) or not a setting.
NOT_VARIANT = ("dataset", "backbone", "pretrained", "method", "recipe", "seed")
# Where the data comes from, not how a run trains: named only where rows of one dataset differ in it.
PATHS = ("data_root", *config.DATA_FILES)
GREEK = {"gamma": "γ", "tau": "τ", "rho": "ρ", "beta": "β", "alpha": "α"}


def _defaults(spec: dict) -> dict:
    try:
        return config.effective({**config.defaults(spec["dataset"], spec["method"], spec.get("recipe")),
                                 "recipe": spec.get("recipe")})
    except (UserError, KeyError):  # a method or recipe this version does not know: every setting counts as chosen
        return {}


def chosen(spec: dict) -> set[str]:
    """The settings of a stored run's spec that differ from its dataset's, method's and recipe's defaults."""
    body, base = config.hashed_body(spec), _defaults(spec)
    return {k for k, v in body.items() if k not in NOT_VARIANT and k not in PATHS and (k not in base or base[k] != v)}


def implied(spec: dict) -> set[str]:
    """The settings the row's Method column already says: its loss, when it is the method's own (``ce``
    trains with ``loss=ce``, ``lift`` with ``loss=logit_adjust``)."""
    try:
        return {"loss"} if spec.get("loss") == catalog.method(spec["method"]).loss else set()
    except (UserError, KeyError):
        return set()


def short_names(keys: Iterable[str]) -> dict[str, str]:
    """``train.iters`` → ``iters``, ``loss.gamma`` → ``γ``; the full key where two keys would read alike."""
    keys = list(keys)
    last = {k: GREEK.get(k.rsplit(".", 1)[-1], k.rsplit(".", 1)[-1]) for k in keys}
    return {k: name if list(last.values()).count(name) == 1 else k for k, name in last.items()}


def text(key: str, value) -> str:
    """A setting's value as a label shows it: never ``None``."""
    if value is None:
        return "off" if key.startswith("loss.") else "default"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _same(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def name(specs: list[dict]) -> tuple[list[str], list[str]]:
    """The variant of each spec (one per table row, in order) and the notes on settings all rows share."""
    bodies = [config.hashed_body(s) for s in specs]
    keys = set().union(*[chosen(s) for s in specs]) if specs else set()
    keys = sorted(keys | {k for k in PATHS if len({_same(b.get(k)) for b in bodies}) > 1})
    shared = [k for k in keys if all(k in b for b in bodies) and len({_same(b[k]) for b in bodies}) == 1]
    shown = [k for k in keys if k not in shared]
    names = short_names(keys)
    variants = [" ".join(f"{names[k]}={text(k, b[k])}" for k in shown if k in b and k not in implied(s))
                for s, b in zip(specs, bodies)]
    common = [f"{names[k]}={text(k, bodies[0][k])}" for k in shared]
    return variants, ([f"all rows: {' '.join(common)}"] if common else [])
