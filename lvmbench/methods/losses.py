"""Losses for long-tailed classification.

Every loss is an ``nn.Module`` called as ``loss(logits, targets)`` and returns
the scalar mean loss over the batch. Logits are cast to float32 before any
arithmetic, so bf16/fp16 logits are fine.

All losses are built from the per-class training counts ``n_c``. Counts are
clamped to at least 1 before deriving priors ``pi_c = n_c / N`` and weights,
so a class that is absent from the training set gets a small but finite prior
(no ``log 0`` or division by zero).

Use :func:`build_loss` with a name from :data:`LOSSES` and a recipe: ``paper`` is the study's
code (Imbalance-VLM, ``imblearn/algorithms/supervised/utils.py``), ``reference`` each method's
authors' code. Only LDAM (its defaults) and LADE (its regulariser) differ between them.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..hparams import LOSS_DEFAULTS, RECIPE_LOSS_DEFAULTS

RECIPES = ("paper", "reference")

__all__ = [
    "LOSSES",
    "LossInfo",
    "Range",
    "build_loss",
    "ImbalancedLoss",
    "CrossEntropyLoss",
    "ClassBalancedWeightedLoss",
    "FocalLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "BalancedSoftmaxLoss",
    "LADELoss",
    "GRWLoss",
]


# --------------------------------------------------------------------------- helpers


def _as_counts(class_counts) -> torch.Tensor:
    """Per-class counts as a float64 tensor, clamped to >= 1 (see module doc)."""
    counts = torch.as_tensor(class_counts, dtype=torch.float64).flatten()
    if counts.numel() == 0:
        raise ValueError("class_counts is empty")
    if (counts < 0).any():
        raise ValueError("class_counts must be non-negative")
    return counts.clamp_min(1.0)


def _prior(counts: torch.Tensor) -> torch.Tensor:
    """Training class prior pi_c = n_c / N."""
    return counts / counts.sum()


def _normalise_to_num_classes(weights: torch.Tensor) -> torch.Tensor:
    """Rescale weights so that they sum to C."""
    return weights * (weights.numel() / weights.sum())


def effective_number_weights(counts: torch.Tensor, beta: float) -> torch.Tensor:
    """Cui et al. 2019 weights w_c = (1 - beta) / (1 - beta^n_c), summing to C.

    "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019.
    """
    if not 0.0 < beta < 1.0:
        raise ValueError(f"beta must be in (0, 1), got {beta}")
    counts = _as_counts(counts)
    weights = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts))
    return _normalise_to_num_classes(weights)


def _check_recipe(recipe: str) -> str:
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; valid: {', '.join(RECIPES)}")
    return recipe


# --------------------------------------------------------------------------- losses


class ImbalancedLoss(nn.Module):
    """Base class: stores the class prior as buffers; ``set_progress`` is a no-op."""

    def __init__(self, class_counts):
        super().__init__()
        counts = _as_counts(class_counts)
        self.num_classes = counts.numel()
        self.register_buffer("class_counts", counts.float())
        self.register_buffer("log_prior", _prior(counts).log().float())

    def set_progress(self, fraction: float) -> None:
        """Tell the loss which fraction of training is done (in [0, 1])."""

    def _check(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if logits.dim() != 2 or logits.size(1) != self.num_classes:
            raise ValueError(
                f"expected logits of shape [B, {self.num_classes}], got {tuple(logits.shape)}"
            )
        return logits.float(), targets.long()


class CrossEntropyLoss(ImbalancedLoss):
    """Plain softmax cross-entropy (the class counts are ignored)."""

    def forward(self, logits, targets):
        logits, targets = self._check(logits, targets)
        return F.cross_entropy(logits, targets)


class ClassBalancedWeightedLoss(ImbalancedLoss):
    """Cross-entropy re-weighted per class, reduced as sum(w_i l_i) / sum(w_i).

    With ``beta`` off (None or 0) the weights are inverse frequency,
    w_c = N / (C n_c). With ``0 < beta < 1`` they are the effective-number
    weights w_c = (1 - beta) / (1 - beta^n_c) normalised to sum to C, from
    Cui et al., "Class-Balanced Loss Based on Effective Number of Samples",
    CVPR 2019.
    """

    def __init__(self, class_counts, beta: float | None = None):
        super().__init__(class_counts)
        counts = _as_counts(class_counts)
        if beta:
            weights = effective_number_weights(counts, beta)
        else:
            weights = counts.sum() / (counts.numel() * counts)
        self.register_buffer("weight", weights.float())

    def forward(self, logits, targets):
        logits, targets = self._check(logits, targets)
        return F.cross_entropy(logits, targets, weight=self.weight)


class FocalLoss(ImbalancedLoss):
    """Focal loss -(1 - p_y)^gamma log p_y, averaged over the batch.

    Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.
    Computed from ``log_softmax``; 1 - p_y is taken as -expm1(log p_y).
    """

    def __init__(self, class_counts, gamma: float = 2.0):
        super().__init__(class_counts)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)

    def forward(self, logits, targets):
        logits, targets = self._check(logits, targets)
        log_p = F.log_softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
        one_minus_p = (-torch.expm1(log_p)).clamp_min(0.0)
        return -(one_minus_p.pow(self.gamma) * log_p).mean()


class LDAMLoss(ImbalancedLoss):
    """Label-distribution-aware margin loss, optionally with deferred re-weighting.

    Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware
    Margin Loss", NeurIPS 2019. The true-class logit is lowered by
    m_c = max_m * n_c^(-1/4) / max_j n_j^(-1/4), then cross-entropy is taken of
    ``s`` times the logits (``s`` = 30 suits a cosine classifier; with s = 1 the
    loss is CE(z - m_y), which is what the study's ``ldam_loss`` computes: it
    takes ``s`` but never uses it, and has no DRW). With ``drw_start`` set, once
    ``set_progress(fraction)`` reports ``fraction >= drw_start`` the
    cross-entropy is weighted by effective-number weights (beta = 0.9999,
    summing to C), as in the paper's LDAM-DRW schedule.
    """

    DRW_BETA = 0.9999

    def __init__(self, class_counts, max_m: float = 0.5, s: float = 1.0,
                 drw_start: float | None = None):
        super().__init__(class_counts)
        if max_m < 0 or s <= 0:
            raise ValueError(f"need max_m >= 0 and s > 0, got max_m={max_m}, s={s}")
        if drw_start is not None and not 0.0 <= drw_start <= 1.0:
            raise ValueError(f"drw_start must be in [0, 1], got {drw_start}")
        counts = _as_counts(class_counts)
        quarter = counts.pow(-0.25)
        self.register_buffer("margins", (max_m * quarter / quarter.max()).float())
        self.register_buffer("drw_weight", effective_number_weights(counts, self.DRW_BETA).float())
        self.s = float(s)
        self.drw_start = drw_start
        self.set_progress(0.0)

    def set_progress(self, fraction: float) -> None:
        self.drw_active = self.drw_start is not None and fraction >= self.drw_start

    def forward(self, logits, targets):
        logits, targets = self._check(logits, targets)
        margin = F.one_hot(targets, self.num_classes) * self.margins
        weight = self.drw_weight if self.drw_active else None
        return F.cross_entropy(self.s * (logits - margin), targets, weight=weight)


class LogitAdjustedLoss(ImbalancedLoss):
    """Logit-adjusted cross-entropy CE(z + tau log pi).

    Menon et al., "Long-tail learning via logit adjustment", ICLR 2021.
    """

    def __init__(self, class_counts, tau: float = 1.0):
        super().__init__(class_counts)
        self.tau = float(tau)

    def forward(self, logits, targets):
        logits, targets = self._check(logits, targets)
        return F.cross_entropy(logits + self.tau * self.log_prior, targets)


class BalancedSoftmaxLoss(LogitAdjustedLoss):
    """Balanced softmax CE(z + log pi).

    Ren et al., "Balanced Meta-Softmax for Long-Tailed Visual Recognition",
    NeurIPS 2020.
    """

    def __init__(self, class_counts):
        super().__init__(class_counts, tau=1.0)


class LADELoss(ImbalancedLoss):
    """LADE: CE(z + log pi) + alpha * L_LADE.

    Hong et al., "Disentangling Label Distribution for Long-tailed Visual
    Recognition", CVPR 2021. For a batch of N samples, with u the logits the
    regulariser reads, for each class c:

    * first_c  = mean of u_c over the batch samples of class c (0 if none),
    * second_c = logsumexp_i(u_ic - log(pi_c + 1e-9) + log(1/C + 1e-9)) - log N,
    * term_c   = first_c - second_c - remine_lambda * second_c^2,

    and L_LADE = -sum_c pi_c * term_c.

    ``recipe="reference"`` follows the authors' code (``loss/LADELoss.py``,
    ``loss/PriorCELoss.py``): u = z, the raw logits, and the cross-entropy
    reads z + log(pi + 1e-9). ``recipe="paper"`` follows the study's
    ``lade_loss``, which overwrites the logits with z + log pi before both
    terms: u = z + log pi and the cross-entropy reads z + log pi.
    """

    EPS = 1e-9

    def __init__(self, class_counts, alpha: float = 0.1, remine_lambda: float = 0.1, recipe: str = "paper"):
        super().__init__(class_counts)
        self.alpha = float(alpha)
        self.remine_lambda = float(remine_lambda)
        self.recipe = _check_recipe(recipe)
        prior = self.log_prior.double().exp()
        self.register_buffer("log_prior_eps", (prior + self.EPS).log().float())
        self.log_uniform = math.log(1.0 / self.num_classes + self.EPS)

    def adjusted(self, logits: torch.Tensor) -> torch.Tensor:
        """The prior-adjusted logits the cross-entropy reads."""
        return logits + (self.log_prior if self.recipe == "paper" else self.log_prior_eps)

    def regulariser(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """L_LADE of the batch (see class docstring); ``logits`` are the raw logits z."""
        logits, targets = self._check(logits, targets)
        u = self.adjusted(logits) if self.recipe == "paper" else logits
        one_hot = F.one_hot(targets, self.num_classes).float()           # [N, C]
        per_class_n = one_hot.sum(0)
        first = (one_hot * u).sum(0) / per_class_n.clamp_min(1.0)       # [C]
        shifted = u - self.log_prior_eps + self.log_uniform
        second = torch.logsumexp(shifted, dim=0) - math.log(logits.size(0))
        term = first - second - self.remine_lambda * second.pow(2)
        return -(self.log_prior.exp() * term).sum()

    def forward(self, logits, targets):
        logits, targets = self._check(logits, targets)
        ce = F.cross_entropy(self.adjusted(logits), targets)
        return ce + self.alpha * self.regulariser(logits, targets)


class GRWLoss(ImbalancedLoss):
    """Generalised re-weighting: w_c proportional to pi_c^(-rho), summing to C.

    Zhang et al., "Distribution Alignment: A Unified Framework for Long-tail
    Visual Recognition" (DisAlign), CVPR 2021. Reduced as a weighted mean like
    :class:`ClassBalancedWeightedLoss`.
    """

    def __init__(self, class_counts, rho: float = 1.2):
        super().__init__(class_counts)
        counts = _as_counts(class_counts)
        weights = _normalise_to_num_classes(_prior(counts).pow(-float(rho)))
        self.register_buffer("weight", weights.float())

    def forward(self, logits, targets):
        logits, targets = self._check(logits, targets)
        return F.cross_entropy(logits, targets, weight=self.weight)


# --------------------------------------------------------------------------- registry


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

    cls: type[ImbalancedLoss]
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
                f"unknown hyper-parameter(s) {unknown} for loss {self.cls.__name__}; valid: {valid}"
            )
        merged = {**self.defaults, **self.recipe_defaults.get(_check_recipe(recipe), {})}
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
    "ce": LossInfo(CrossEntropyLoss, "plain cross-entropy"),
    "cbw": LossInfo(ClassBalancedWeightedLoss,
                    "class-balanced re-weighting: inverse frequency, or effective number with beta",
                    LOSS_DEFAULTS["cbw"], ranges={"beta": Range(0.0, 1.0, hi_open=True)}),  # 0 = off, as None
    "focal": LossInfo(FocalLoss, "focal loss (Lin et al. 2017)", LOSS_DEFAULTS["focal"], ranges={"gamma": NON_NEGATIVE}),
    "ldam": LossInfo(LDAMLoss, "label-distribution-aware margin loss, optional DRW (Cao et al. 2019)",
                     LOSS_DEFAULTS["ldam"],
                     recipe_defaults={r: d["ldam"] for r, d in RECIPE_LOSS_DEFAULTS.items()}, optional=frozenset({"drw_start"}),
                     ranges={"max_m": NON_NEGATIVE, "s": POSITIVE, "drw_start": FRACTION}),
    "balanced_softmax": LossInfo(BalancedSoftmaxLoss, "balanced softmax CE(z + log prior) (Ren et al. 2020)"),
    "lade": LossInfo(LADELoss, "balanced softmax + LADE regulariser (Hong et al. 2021)",
                     LOSS_DEFAULTS["lade"], takes_recipe=True,
                     ranges={"alpha": NON_NEGATIVE, "remine_lambda": NON_NEGATIVE}),
    "grw": LossInfo(GRWLoss, "generalised re-weighting prior^-rho (Zhang et al. 2021)", LOSS_DEFAULTS["grw"],
                    ranges={"rho": NON_NEGATIVE}),
    "logit_adjust": LossInfo(LogitAdjustedLoss, "logit-adjusted CE(z + tau log prior) (Menon et al. 2021)",
                             LOSS_DEFAULTS["logit_adjust"], ranges={"tau": NON_NEGATIVE}),
}


def build_loss(name: str, class_counts, recipe: str = "paper", **hparams) -> ImbalancedLoss:
    """Build the loss ``name`` of :data:`LOSSES` for the given training class counts, as the
    ``recipe`` defines it (``paper``: the study's code; ``reference``: the method's authors' code)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")
    info = LOSSES[name]
    extra = {"recipe": recipe} if info.takes_recipe else {}
    return info.cls(class_counts, **info.check(hparams, recipe), **extra)
