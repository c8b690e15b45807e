"""Each loss's hyper-parameters and their defaults, per recipe (pure data, no torch).

The loss classes (:mod:`lvmbench.methods.losses`) take their defaults from here, and
:func:`lvmbench.config.effective` fills them into every run spec, so that a run's identity (config
hash, result group) holds the value each hyper-parameter takes whether the user typed it or not.
A default of ``None`` means "off". ``paper``: the study's code (Imbalance-VLM,
``imblearn/algorithms/supervised/utils.py``); ``reference``: each method's authors' code.
"""
from __future__ import annotations

LOSS_DEFAULTS: dict[str, dict[str, float | None]] = {
    "ce": {},
    "cbw": {"beta": None},  # inverse frequency; a beta in (0, 1): Cui et al.'s effective number
    "focal": {"gamma": 2.0},
    "ldam": {"max_m": 0.5, "s": 1.0, "drw_start": None},
    "balanced_softmax": {},
    "lade": {"alpha": 0.1, "remine_lambda": 0.1},
    "grw": {"rho": 1.2},
    "logit_adjust": {"tau": 1.0},
}

# Defaults a recipe replaces: Cao et al.'s LDAM-DRW (kaidic/LDAM-DRW) scales by 30 and re-weights from 80 %.
RECIPE_LOSS_DEFAULTS: dict[str, dict[str, dict[str, float | None]]] = {
    "reference": {"ldam": {"s": 30.0, "drw_start": 0.8}},
}

# Values that turn a term off as None does (cbw's beta = 0: inverse frequency): one configuration, stored as None.
OFF_VALUES: dict[str, dict[str, float]] = {"cbw": {"beta": 0.0}}


def loss_defaults(loss: str, recipe: str | None) -> dict[str, float | None]:
    """The hyper-parameters ``loss`` takes under ``recipe`` when none is set (unknown loss: none)."""
    if not isinstance(loss, str) or not isinstance(recipe, (str, type(None))):
        return {}
    return {**LOSS_DEFAULTS.get(loss, {}), **RECIPE_LOSS_DEFAULTS.get(recipe or "paper", {}).get(loss, {})}
