"""Each loss against its formula, computed independently in float64 numpy/Python."""

import inspect
import math

import numpy as np
import pytest
import torch

from lvmbench.methods import losses
from lvmbench.methods.losses import (FRACTION, LOSSES, NON_NEGATIVE, POSITIVE, FocalLoss, LDAMLoss, LossInfo, Range,
                                      build_loss, effective_number_weights)

COUNTS = [100, 20, 5, 1]
C = len(COUNTS)


def _batch(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, C, generator=g) * 2
    targets = torch.tensor([i % C for i in range(n)])
    return logits, targets


def _np(logits):
    return logits.double().numpy()


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _nll(z, y):
    """Per-sample cross-entropy -log softmax(z)_y."""
    return -_log_softmax(z)[np.arange(len(y)), y]


def _weighted_mean(values, w, y):
    return (w[y] * values).sum() / w[y].sum()


def _prior():
    n = np.array(COUNTS, dtype=float)
    return n / n.sum()


def _check(name, expected, logits=None, targets=None, **hp):
    if logits is None:
        logits, targets = _batch()
    loss = build_loss(name, COUNTS, **hp)(logits, targets)
    assert loss.dim() == 0 and loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected(_np(logits), targets.numpy()), rel=1e-5, abs=1e-6)


def test_ce():
    _check("ce", lambda z, y: _nll(z, y).mean())


def test_cbw_inverse_frequency():
    # N = 126, C = 4: w_c = 126 / (4 n_c) = [0.315, 1.575, 6.3, 31.5]
    w = np.array([0.315, 1.575, 6.3, 31.5])
    assert build_loss("cbw", COUNTS).weight.numpy() == pytest.approx(w)
    _check("cbw", lambda z, y: _weighted_mean(_nll(z, y), w, y))


def test_cbw_effective_number():
    # counts [1, 2], beta 0.9: raw w = [0.1/0.1, 0.1/0.19] = [1, 10/19];
    # scaled to sum 2: [2 * 19/29, 2 * 10/29] = [38/29, 20/29]
    loss = build_loss("cbw", [1, 2], beta=0.9)
    assert loss.weight.numpy() == pytest.approx([38 / 29, 20 / 29], rel=1e-6)
    beta = 0.9999
    n = np.array(COUNTS, dtype=float)
    w = (1 - beta) / (1 - beta**n)
    w = w * C / w.sum()
    _check("cbw", lambda z, y: _weighted_mean(_nll(z, y), w, y), beta=beta)


def test_focal():
    _check("focal", lambda z, y: _nll(z, y).mean(), gamma=0.0)

    def focal(z, y, gamma=2.0):
        p = np.exp(-_nll(z, y))
        return np.mean(-((1 - p) ** gamma) * np.log(p))

    _check("focal", focal)
    _check("focal", lambda z, y: focal(z, y, 0.5), gamma=0.5)


def test_ldam_margins_and_formula():
    # counts [16, 1]: n^(-1/4) = [0.5, 1], so margins = 0.5 * [0.5, 1] = [0.25, 0.5]
    assert build_loss("ldam", [16, 1]).margins.numpy() == pytest.approx([0.25, 0.5])
    quarter = np.array(COUNTS, dtype=float) ** -0.25
    m = 0.5 * quarter / quarter.max()

    def ldam(z, y, s):
        z = z.copy()
        z[np.arange(len(y)), y] -= m[y]
        return _nll(s * z, y).mean()

    _check("ldam", lambda z, y: ldam(z, y, 1.0))  # the study's ldam_loss (recipe=paper): no scale
    logits, targets = _batch()
    _check("ldam", lambda z, y: ldam(z, y, 30.0), logits=logits / 10, targets=targets, recipe="reference")


def test_ldam_drw_switches_on_with_progress():
    logits, targets = _batch()
    loss = build_loss("ldam", COUNTS, s=1.0, drw_start=0.8)
    plain = build_loss("ldam", COUNTS, s=1.0)(logits, targets)
    loss.set_progress(0.5)
    assert loss(logits, targets).item() == pytest.approx(plain.item())
    loss.set_progress(0.8)
    beta = 0.9999
    n = np.array(COUNTS, dtype=float)
    w = (1 - beta) / (1 - beta**n)
    w = w * C / w.sum()
    quarter = n**-0.25
    z, y = _np(logits), targets.numpy()
    z[np.arange(len(y)), y] -= (0.5 * quarter / quarter.max())[y]
    assert loss(logits, targets).item() == pytest.approx(_weighted_mean(_nll(z, y), w, y), rel=1e-5)


def test_balanced_softmax_and_logit_adjust():
    log_pi = np.log(_prior())
    _check("balanced_softmax", lambda z, y: _nll(z + log_pi, y).mean())
    _check("logit_adjust", lambda z, y: _nll(z + log_pi, y).mean())
    _check("logit_adjust", lambda z, y: _nll(z + 2.0 * log_pi, y).mean(), tau=2.0)


def _lade_reference(z, y, alpha=0.1, lam=0.1):
    """LADE written with explicit loops over classes and samples."""
    pi = _prior()
    n_batch = len(y)
    reg = 0.0
    for c in range(C):
        members = [z[i, c] for i in range(n_batch) if y[i] == c]
        first = sum(members) / len(members) if members else 0.0
        shifted = [z[i, c] - math.log(pi[c]) + math.log(1.0 / C) for i in range(n_batch)]
        top = max(shifted)
        second = top + math.log(sum(math.exp(v - top) for v in shifted)) - math.log(n_batch)
        reg -= pi[c] * (first - second - lam * second**2)
    return _nll(z + np.log(pi), y).mean() + alpha * reg


def test_lade():
    # The authors' LADE (recipe=reference): the regulariser reads the raw logits.
    _check("lade", _lade_reference, recipe="reference")
    _check("lade", lambda z, y: _lade_reference(z, y, 0.5, 0.01), alpha=0.5, remine_lambda=0.01, recipe="reference")
    # a batch that misses classes 2 and 3 (first_c = 0 for them)
    logits, _ = _batch(n=5, seed=3)
    targets = torch.tensor([0, 1, 0, 0, 1])
    _check("lade", _lade_reference, logits=logits, targets=targets, recipe="reference")


def test_grw():
    def grw(z, y, rho):
        w = _prior() ** -rho
        w = w * C / w.sum()
        return _weighted_mean(_nll(z, y), w, y)

    _check("grw", lambda z, y: grw(z, y, 1.2))
    _check("grw", lambda z, y: grw(z, y, 0.5), rho=0.5)
    assert build_loss("grw", COUNTS).weight.sum().item() == pytest.approx(C)


ALL_CONFIGS = [(name, {}) for name in LOSSES] + [
    ("cbw", {"beta": 0.9999}),
    ("ldam", {"drw_start": 0.0}),
]


@pytest.mark.parametrize("name,hp", ALL_CONFIGS)
def test_gradients_flow(name, hp):
    logits, targets = _batch()
    logits = (logits / 10).requires_grad_()
    loss = build_loss(name, COUNTS, **hp)
    loss.set_progress(1.0)
    loss(logits, targets).backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list(LOSSES))
def test_bf16_logits(name):
    logits, targets = _batch()
    low = logits.bfloat16().requires_grad_()
    loss = build_loss(name, COUNTS)
    out = loss(low, targets)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(loss(low.detach().float(), targets).item(), rel=1e-6)
    out.backward()
    assert low.grad.dtype == torch.bfloat16 and torch.isfinite(low.grad.float()).all()


@pytest.mark.parametrize("name", list(LOSSES))
def test_zero_counts_stay_finite(name):
    logits, targets = _batch()
    targets = targets % 2  # only classes 0 and 1 occur
    loss = build_loss(name, [50, 3, 0, 0])
    for buf in loss.buffers():
        assert torch.isfinite(buf).all()
    assert torch.isfinite(loss(logits, targets))


def test_unknown_hparam_and_name():
    with pytest.raises(ValueError, match="gamma"):
        build_loss("focal", COUNTS, gama=2.0)
    with pytest.raises(ValueError, match="max_m"):
        build_loss("ldam", COUNTS, margin=0.3)
    with pytest.raises(ValueError, match="none"):
        build_loss("ce", COUNTS, tau=1.0)
    with pytest.raises(ValueError, match="lade"):
        build_loss("no_such_loss", COUNTS)
    with pytest.raises(ValueError, match="number"):
        build_loss("focal", COUNTS, gamma="two")


def test_registry_defaults_match_constructors():
    for name, info in LOSSES.items():
        assert info.description
        params = inspect.signature(getattr(losses, info.cls).__init__).parameters
        ctor = {k: p.default for k, p in params.items() if k not in ("self", "class_counts", "recipe")}
        assert ctor == info.defaults, name


def test_buffers_follow_module():
    loss = build_loss("lade", COUNTS)
    names = dict(loss.named_buffers())
    assert {"log_prior", "class_counts"} <= set(names)
    assert loss.to(torch.float64).log_prior.dtype == torch.float64
    assert "margins" in dict(build_loss("ldam", COUNTS).named_buffers())
    assert "weight" in dict(build_loss("grw", COUNTS).named_buffers())


def test_drw_from_start_and_numpy_hparams():
    logits, targets = _batch()
    weighted = build_loss("ldam", COUNTS, s=1.0, drw_start=0.0)
    later = build_loss("ldam", COUNTS, s=1.0, drw_start=0.5)
    later.set_progress(0.5)
    assert weighted(logits, targets).item() == pytest.approx(later(logits, targets).item())
    assert build_loss("focal", COUNTS, gamma=np.float64(1.0)).gamma == 1.0
    assert build_loss("logit_adjust", COUNTS, tau=np.int64(2)).tau == 2.0


def test_lade_regulariser_of_a_class_with_one_sample_in_the_batch():
    """first_c is the mean over the class's samples: for a singleton class, its one logit."""
    logits, _ = _batch(n=6, seed=5)
    _check("lade", _lade_reference, logits=logits, targets=torch.tensor([0, 0, 1, 0, 2, 2]), recipe="reference")


def test_lade_recipes_differ_by_the_authors_epsilon_on_a_rare_class():
    """The authors' prior term is log(pi + 1e-9), the study's log(pi): with pi_1 = 1e-7 the two differ by
    log(1.01) on class 1 (invisible with the counts of the other tests)."""
    counts = [10_000_000 - 1, 1]
    pi = np.array(counts, dtype=float) / 10_000_000
    z = torch.zeros(1, 2)
    paper = build_loss("lade", counts, recipe="paper").adjusted(z)[0].double().numpy()
    reference = build_loss("lade", counts, recipe="reference").adjusted(z)[0].double().numpy()
    assert paper == pytest.approx(np.log(pi), abs=1e-5)
    assert reference == pytest.approx(np.log(pi + 1e-9), abs=1e-5)
    assert reference[1] - paper[1] == pytest.approx(math.log(1.01), abs=1e-4)


def test_ldam_margins_are_relative_to_the_rarest_class():
    # n^(-1/4) = [1/2, 1/3, 1/4]: the rarest class (16) gets max_m, the others in proportion
    assert build_loss("ldam", [16, 81, 256], max_m=0.6).margins.numpy() == pytest.approx([0.6, 0.4, 0.3])


def test_logits_of_the_wrong_shape_are_refused():
    loss, targets = build_loss("ce", COUNTS), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"expected logits of shape \[B, 4\], got \(4,\)"):
        loss(torch.zeros(C), targets)
    with pytest.raises(ValueError, match=r"expected logits of shape \[B, 4\], got \(2, 3\)"):
        loss(torch.zeros(2, 3), targets)


@pytest.mark.parametrize("build,message", [
    (lambda: effective_number_weights(torch.tensor([5.0, 1.0]), 0.0), "beta must be in (0, 1), got 0.0"),
    (lambda: effective_number_weights(torch.tensor([5.0, 1.0]), 1.0), "beta must be in (0, 1), got 1.0"),
    (lambda: effective_number_weights(torch.tensor([5.0, 1.0]), 1.5), "beta must be in (0, 1), got 1.5"),
    (lambda: FocalLoss(COUNTS, gamma=-0.5), "gamma must be >= 0, got -0.5"),
    (lambda: LDAMLoss(COUNTS, max_m=-0.1, s=1.0), "need max_m >= 0 and s > 0, got max_m=-0.1, s=1.0"),
    (lambda: LDAMLoss(COUNTS, max_m=0.5, s=0.0), "need max_m >= 0 and s > 0, got max_m=0.5, s=0.0"),
    (lambda: LDAMLoss(COUNTS, max_m=0.5, s=1.0, drw_start=1.5), "drw_start must be in [0, 1], got 1.5"),
    (lambda: build_loss("ce", []), "class_counts is empty"),
    (lambda: build_loss("ce", [3, -1]), "class_counts must be non-negative"),
], ids=["beta-0", "beta-1", "beta-1.5", "gamma", "max_m", "s", "drw_start", "empty", "negative"])
def test_a_loss_built_directly_refuses_values_outside_its_formula(build, message):
    with pytest.raises(ValueError) as caught:
        build()
    assert str(caught.value) == message


def test_a_loss_built_directly_takes_the_edges_of_its_ranges():
    assert LDAMLoss(COUNTS, max_m=0.0, s=1.0, drw_start=1.0).margins.abs().sum().item() == 0.0
    assert FocalLoss(COUNTS, gamma=0.0).gamma == 0.0
    assert build_loss("ce", [7]).num_classes == 1


@pytest.mark.parametrize("allowed,inside,outside,text", [
    (Range(), [-1e9, 0.0, 1e9], [math.inf, -math.inf, math.nan], "a finite number"),
    (NON_NEGATIVE, [0.0, 2.0], [-1e-9, math.inf], ">= 0"),
    (POSITIVE, [1e-9, 2.0], [0.0, -1.0], "> 0"),
    (FRACTION, [0.0, 0.5, 1.0], [-0.1, 1.1], "in [0, 1]"),
    (Range(0.0, 1.0, hi_open=True), [0.0, 0.999], [1.0, 1.5], "in [0, 1)"),
    (Range(0.0, 1.0, lo_open=True), [1e-9, 1.0], [0.0], "in (0, 1]"),
    (Range(hi=2.0), [-5.0, 2.0], [2.5], "<= 2"),
    (Range(hi=2.0, hi_open=True), [1.9], [2.0], "< 2"),
], ids=["any", "non-negative", "positive", "fraction", "half-open-hi", "half-open-lo", "at-most", "below"])
def test_hyper_parameter_ranges_hold_what_they_say(allowed, inside, outside, text):
    assert all(v in allowed for v in inside)
    assert not any(v in allowed for v in outside)
    assert str(allowed) == text


def test_hyper_parameter_check_names_the_valid_ones_and_the_range():
    def refused(name, message, **hparams):
        with pytest.raises(ValueError) as caught:
            build_loss(name, COUNTS, **hparams)
        assert str(caught.value) == message

    refused("ce", "unknown hyper-parameter(s) ['tau'] for loss CrossEntropyLoss; valid: none", tau=1.0)
    refused("ldam", "unknown hyper-parameter(s) ['margin'] for loss LDAMLoss; valid: drw_start, max_m, s", margin=0.3)
    refused("focal", "gamma=-1: must be >= 0", gamma=-1)
    refused("focal", "gamma=None: must be a number", gamma=None)  # None is "off" only where the default is
    refused("nope", "unknown loss 'nope'; valid: " + ", ".join(LOSSES))


def test_hyper_parameter_check_merges_defaults_and_none():
    assert LOSSES["ldam"].check({}) == {"max_m": 0.5, "s": 1.0, "drw_start": None}  # recipe=paper by default
    assert LOSSES["ldam"].check({}, "reference") == {"max_m": 0.5, "s": 30.0, "drw_start": 0.8}
    assert LOSSES["cbw"].check({"beta": None}) == {"beta": None}
    assert LOSSES["ldam"].check({"drw_start": None, "max_m": 2}, "reference") == {"max_m": 2.0, "s": 30.0,
                                                                                   "drw_start": None}
    unranged = LossInfo(LOSSES["ce"].cls, "a loss whose hyper-parameter has no range", {"k": 1.0})
    assert unranged.check({"k": -5}) == {"k": -5.0}
    with pytest.raises(ValueError, match="k=inf: must be a finite number"):
        unranged.check({"k": math.inf})


def test_effective_number_weights_keep_beta_in_double_precision():
    """beta = 0.9999 rounded to float32 is 0.99989998: 1 - beta is then off by 2e-4 relative, which moves
    the weight of a class of 100,000 against a class of one (the study's beta on iNaturalist-like counts)."""
    beta, n = 0.9999, np.array([100_000.0, 1.0])
    w = (1 - beta) / (1 - beta**n)
    w = w * 2 / w.sum()
    assert effective_number_weights(torch.tensor(n), beta).numpy() == pytest.approx(w, rel=1e-7)
