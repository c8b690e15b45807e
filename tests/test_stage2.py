import pytest
import torch
from torch import nn

from lvmbench.methods.stage2 import LWS, MARC, DisAlign, count_trainable

B, D, C = 6, 8, 5


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, D, generator=g), torch.randn(B, C, generator=g)


def test_lws_identity_at_init_and_params():
    feats, logits = _inputs()
    lws = LWS(C)
    assert torch.equal(lws(feats, logits), logits)
    assert count_trainable(lws) == C
    with torch.no_grad():
        lws.scale.copy_(torch.arange(1.0, C + 1))
    assert torch.allclose(lws(feats, logits), logits * torch.arange(1.0, C + 1))


def test_disalign_formula_at_init():
    feats, logits = _inputs()
    da = DisAlign(C, D)
    sigma = torch.sigmoid(feats @ da.confidence.weight.T + da.confidence.bias)  # [B, 1]
    assert torch.allclose(da(feats, logits), (1 + sigma) * logits)
    assert count_trainable(da) == 2 * C + D + 1


def test_disalign_general_formula():
    feats, logits = _inputs(1)
    da = DisAlign(C, D)
    with torch.no_grad():
        da.scale.uniform_(-1, 1)
        da.bias.uniform_(-1, 1)
    sigma = torch.sigmoid(da.confidence(feats))
    expected = (1 + sigma * da.scale) * logits + sigma * da.bias
    assert torch.allclose(da(feats, logits), expected)


def test_marc_formula_and_buffer():
    feats, logits = _inputs()
    classifier = nn.Linear(D, C)
    marc = MARC(classifier.weight)
    assert torch.equal(marc(feats, logits), logits)
    assert count_trainable(marc) == 2 * C
    assert "weight_norm" in dict(marc.named_buffers())
    assert all(p is not marc.weight_norm for p in marc.parameters())
    assert not marc.weight_norm.requires_grad
    norms = torch.stack([torch.sqrt((classifier.weight[c] ** 2).sum()) for c in range(C)])
    assert torch.allclose(marc.weight_norm, norms.detach())
    with torch.no_grad():
        marc.a.fill_(2.0)
        marc.b.fill_(0.5)
    assert torch.allclose(marc(feats, logits), 2 * logits + 0.5 * norms.detach())


def test_marc_norm_is_a_snapshot():
    classifier = nn.Linear(D, C)
    marc = MARC(classifier)  # an nn.Linear is accepted too
    before = marc.weight_norm.clone()
    with torch.no_grad():
        classifier.weight.mul_(3.0)
    assert torch.equal(marc.weight_norm, before)


def test_gradients_reach_parameters_only():
    feats, logits = _inputs()
    for module in (LWS(C), DisAlign(C, D), MARC(torch.randn(C, D))):
        module(feats, logits).sum().backward()
        for p in module.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()


def test_bf16_inputs():
    feats, logits = _inputs()
    for module in (LWS(C), DisAlign(C, D), MARC(torch.randn(C, D))):
        out = module(feats.bfloat16(), logits.bfloat16())
        assert out.dtype == torch.float32 and out.shape == (B, C)


def test_every_method_has_one_builder_and_models_import_no_methods():
    """One registration per method (as timm's register_model): every method's builder resolves to a
    function, a name registers once, and the models know nothing of the methods built from them."""
    from pathlib import Path

    from lvmbench.methods import METHODS, builder, register_method

    assert all(callable(builder(info)) for info in METHODS.values())
    with pytest.raises(ValueError, match="registered twice"):
        register_method("ce", "decoder", "again", builder=lambda b: None)
    models = Path(__file__).resolve().parents[1] / "lvmbench" / "models"
    assert not [p.name for p in models.rglob("*.py") if "methods" in "".join(
        line for line in p.read_text().splitlines() if line.lstrip().startswith(("from", "import")))]


def test_invalid_arguments_are_refused_word_for_word():
    with pytest.raises(ValueError) as init:
        DisAlign(C, D, confidence_init="zeros")
    assert str(init.value) == "confidence_init must be torch or authors, got 'zeros'"
    with pytest.raises(ValueError) as shape:
        MARC(torch.ones(C))
    assert str(shape.value) == "classifier_weight must be [C, D], got (5,)"
