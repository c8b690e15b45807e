"""The losses' hyper-parameters as data: defaults, ranges and recipe differences of every loss.

Torch-free, so a run spec is validated (:func:`lvmbench.config.validate`) without loading torch;
:func:`lvmbench.methods.losses.build_loss` builds the loss class each entry names.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from ..hparams import LOSS_DEFAULTS, RECIPE_LOSS_DEFAULTS

RECIPES = ("paper", "reference")


def check_recipe(recipe: str) -> str:
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; valid: {', '.join(RECIPES)}")
    return recipe



@dataclass(frozen=True)
class Range:
    """The finite values a hyper-parameter accepts: ``lo`` and ``hi`` bounds (None: unbounded),
    each included unless ``lo_open`` / ``hi_open``."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return False
        return self.hi is None or not (value > self.hi or (self.hi_open and value == self.hi))

    def __str__(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return "a finite number"


NON_NEGATIVE, POSITIVE, FRACTION = Range(lo=0.0), Range(lo=0.0, lo_open=True), Range(0.0, 1.0)


@dataclass(frozen=True)
class LossInfo:
    """A loss class, a one-line description, its hyper-parameter defaults and their ranges.

    Every hyper-parameter is a float; a default of ``None`` means "off" and
    ``None`` is then also an accepted value, as it is for the names in
    ``optional``. ``recipe_defaults`` replaces some defaults under a recipe;
    ``takes_recipe`` says whether the loss's formula itself depends on it.
    ``ranges`` names the values each one accepts (any finite number when it
    is not listed).
    """

    cls: str  # the class's name in lvmbench.methods.losses
    description: str
    defaults: dict[str, float | None] = field(default_factory=dict)
    recipe_defaults: dict[str, dict[str, float | None]] = field(default_factory=dict)
    optional: frozenset = frozenset()
    takes_recipe: bool = False
    ranges: dict[str, Range] = field(default_factory=dict)

    def check(self, hparams: dict[str, Any], recipe: str = "paper") -> dict[str, float | None]:
        """Validate names and types of ``hparams``; return the recipe's defaults updated by them."""
        unknown = sorted(set(hparams) - set(self.defaults))
        if unknown:
            valid = ", ".join(sorted(self.defaults)) or "none"
            raise ValueError(
                f"unknown hyper-parameter(s) {unknown} for loss {self.cls}; valid: {valid}"
            )
        merged = {**self.defaults, **self.recipe_defaults.get(check_recipe(recipe), {})}
        for key, value in hparams.items():
            if value is None and (self.defaults[key] is None or key in self.optional):
                merged[key] = None
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{key}={value!r}: must be a number")
            allowed = self.ranges.get(key, Range())
            if float(value) not in allowed:
                raise ValueError(f"{key}={value}: must be {allowed}")
            merged[key] = float(value)
        return merged


LOSSES: dict[str, LossInfo] = {
    "ce": LossInfo("CrossEntropyLoss", "plain cross-entropy"),
    "cbw": LossInfo("ClassBalancedWeightedLoss",
                    "class-balanced re-weighting: inverse frequency, or effective number with beta",
                    LOSS_DEFAULTS["cbw"], ranges={"beta": Range(0.0, 1.0, hi_open=True)}),  # 0 = off, as None
    "focal": LossInfo("FocalLoss", "focal loss (Lin et al. 2017)", LOSS_DEFAULTS["focal"], ranges={"gamma": NON_NEGATIVE}),
    "ldam": LossInfo("LDAMLoss", "label-distribution-aware margin loss, optional DRW (Cao et al. 2019)",
                     LOSS_DEFAULTS["ldam"],
                     recipe_defaults={r: d["ldam"] for r, d in RECIPE_LOSS_DEFAULTS.items()}, optional=frozenset({"drw_start"}),
                     ranges={"max_m": NON_NEGATIVE, "s": POSITIVE, "drw_start": FRACTION}),
    "balanced_softmax": LossInfo("BalancedSoftmaxLoss", "balanced softmax CE(z + log prior) (Ren et al. 2020)"),
    "lade": LossInfo("LADELoss", "balanced softmax + LADE regulariser (Hong et al. 2021)",
                     LOSS_DEFAULTS["lade"], takes_recipe=True,
                     ranges={"alpha": NON_NEGATIVE, "remine_lambda": NON_NEGATIVE}),
    "grw": LossInfo("GRWLoss", "generalised re-weighting prior^-rho (Zhang et al. 2021)", LOSS_DEFAULTS["grw"],
                    ranges={"rho": NON_NEGATIVE}),
    "logit_adjust": LossInfo("LogitAdjustedLoss", "logit-adjusted CE(z + tau log prior) (Menon et al. 2021)",
                             LOSS_DEFAULTS["logit_adjust"], ranges={"tau": NON_NEGATIVE}),
}
