"""LIFT's parameter-efficient modules in the CLIP image tower (Shi et al. 2024, shijxcs/LIFT)."""
from __future__ import annotations

import open_clip
import pytest
import torch

from lvmbench.errors import UserError
from lvmbench.models import peft, tiny_clip


def tiny_visual(seed: int = 0):
    tiny_clip.register()
    torch.manual_seed(seed)
    return open_clip.create_model("tiny-clip").visual.eval()


def frozen_features(visual, images):
    """LIFT's feature from the untouched open_clip tower: class token after ln_post, no projection."""
    with torch.no_grad():
        return visual._pool(visual.transformer(visual._embeds(images)))[0]


def hand_count(method: str, dim: int, layers: int, mlp: int, r: int, vpt_len: int = 10) -> int:
    """Trainable parameters of each method, counted by hand from LIFT's module definitions."""
    bottleneck = 2 * dim + dim * r + r + r * dim + dim  # LN (w, b), down (W, b), up (W, b)
    per_layer = {
        "lift": bottleneck + 1,  # + AdaptFormer's learnable scale
        "adapter": bottleneck,
        "lora": 2 * (dim * r + r * dim),  # q and v: A [D, r], B [r, D]
        "bitfit": dim + 3 * dim + dim + dim + mlp + dim,  # ln_1, in_proj, out_proj, ln_2, c_fc, c_proj
        "ssf": 2 * (dim + 3 * dim + dim + dim + mlp + dim),  # scale + shift after each of the six
        "vpt_shallow": 0,
        "vpt_deep": vpt_len * dim,
    }[method]
    return layers * per_layer + (vpt_len * dim if method == "vpt_shallow" else 0)


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_lift_bottleneck_rule():
    assert peft.lift_bottleneck(1000, 12) == 32  # ImageNet-LT, ViT-B/16
    assert peft.lift_bottleneck(365, 12) == 8  # Places-LT
    assert peft.lift_bottleneck(8142, 12) == 256  # iNaturalist 2018
    assert peft.lift_bottleneck(10, 4) == 1  # mnist-lt on tiny-clip: log2(10/8) -> 0


@pytest.mark.parametrize("method", peft.METHODS)
def test_trainable_counts_tiny_clip(method):
    model = peft.peft_tower(tiny_visual(), method, 10, is_vit=True)
    assert trainable(model) == hand_count(method, dim=64, layers=4, mlp=256, r=1)


@pytest.fixture(scope="module")
def vit_b16():
    return open_clip.create_model("ViT-B-16").visual  # random weights, built once: only the shapes matter


@pytest.mark.parametrize("method", peft.METHODS)
def test_trainable_counts_vit_b16(method, vit_b16):
    visual = vit_b16.requires_grad_(False)  # bitfit unfreezes biases of the shared tower
    model = peft.peft_tower(visual, method, 1000, is_vit=True)
    assert trainable(model) == hand_count(method, dim=768, layers=12, mlp=3072, r=32)
    if method == "lift":
        assert trainable(model) == 617_868  # LIFT reports ~0.62M for AdaptFormer on ImageNet-LT


def test_block_forward_without_modules_is_the_tower():
    visual = tiny_visual()
    images = torch.randn(3, 3, 28, 28)
    x = visual._embeds(images)
    with torch.no_grad():
        ours, theirs = x, x
        for block in visual.transformer.resblocks:
            ours = peft.block_forward(block, ours, torch.nn.ModuleDict())
            theirs = block(theirs)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def neutralise_ssf(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, peft.SSF):
                m.scale.fill_(1.0)
                m.shift.zero_()


@pytest.mark.parametrize("method", ["lift", "adapter", "lora", "bitfit", "ssf"])
def test_starts_as_the_frozen_tower(method):
    visual = tiny_visual()
    images = torch.randn(4, 3, 28, 28)
    before = frozen_features(visual, images)
    model = peft.peft_tower(visual, method, 10, is_vit=True).eval()
    with torch.no_grad():
        out = model(images)
    if method == "ssf":  # LIFT draws scale ~ N(1, .02), shift ~ N(0, .02): near identity, not at it
        assert not torch.allclose(out, before, atol=1e-4)
        neutralise_ssf(model)
        with torch.no_grad():
            out = model(images)
    torch.testing.assert_close(out, before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["vpt_shallow", "vpt_deep"])
def test_vpt_changes_the_output_and_drops_old_prompts(method):
    """VPT's prompts join attention from the start (LIFT's uniform init): the output moves; the
    patch tokens fed to each block are still the tower's own, prompts are replaced, not stacked."""
    visual = tiny_visual()
    images = torch.randn(2, 3, 28, 28)
    model = peft.peft_tower(visual, method, 10, is_vit=True).eval()
    bound = (6.0 / (3 * 4 * 4 + 64)) ** 0.5
    assert all(0.97 * bound < p.prompt.abs().max() <= bound for p in model.prompts)  # 640 draws reach the bound
    assert all(p.prompt.min() < -0.9 * bound and p.prompt.max() > 0.9 * bound for p in model.prompts)  # both signs
    with torch.no_grad():
        assert not torch.allclose(model(images), frozen_features(visual, images), atol=1e-4)
        x = visual._embeds(images)
        seq = x.shape[1]
        out = model.prompts[0](x)
        assert out.shape[1] == seq + 10 and torch.equal(out[:, :seq], x)
        assert model.prompts[0](out).shape[1] == seq + 10


@pytest.mark.parametrize("method", peft.METHODS)
def test_one_step_changes_only_the_methods_parameters(method):
    visual = tiny_visual()
    frozen = {k: v.clone() for k, v in visual.state_dict().items()}
    model = peft.peft_tower(visual, method, 10, is_vit=True)
    tuned = {name for name, p in model.named_parameters() if p.requires_grad}
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5, momentum=0.9)
    model.train()
    loss = model(torch.randn(8, 3, 28, 28)).pow(2).sum() + 0.0
    loss.backward()
    opt.step()
    for name, p in model.named_parameters():
        if name in tuned:
            continue
        assert torch.equal(p, start[name]), name
    for key, value in model.visual.state_dict().items():
        if f"visual.{key}" not in tuned:
            assert torch.equal(value, frozen[key]), key
    assert any(not torch.equal(p, start[n]) for n, p in model.named_parameters() if n in tuned)
    if method == "bitfit":
        assert tuned and all(n.startswith("visual.transformer.resblocks.") and n.endswith("bias") for n in tuned)
    else:
        assert tuned and not any(n.startswith("visual.") for n in tuned)


def test_resnet_accepts_bitfit_and_ssf_and_refuses_the_rest():
    visual = open_clip.create_model("RN50").visual.eval()
    bias_count = sum(p.numel() for n, p in visual.named_parameters() if n.endswith("bias"))
    assert trainable(peft.peft_tower(visual, "bitfit", 10, is_vit=False)) == bias_count
    visual.requires_grad_(False)
    ssf = peft.peft_tower(visual, "ssf", 10, is_vit=False)
    assert trainable(ssf) == 2 * 1024
    with pytest.raises(UserError, match="needs a transformer image tower"):
        peft.peft_tower(visual, "lift", 10, is_vit=False, name="RN50")


def test_a_resnet_tower_is_its_frozen_embedding_then_ssf_and_keeps_its_batchnorm_statistics():
    """LIFT's ResNet ``ssf``: one SSF on the pooled, projected embedding of the frozen tower, whose BatchNorm
    statistics stay those of the checkpoint while the run trains (a small ModifiedResNet of open_clip)."""
    from open_clip.modified_resnet import ModifiedResNet

    torch.manual_seed(0)
    visual = ModifiedResNet(layers=(1, 1, 1, 1), output_dim=16, heads=2, image_size=64, width=8)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        frozen = visual.eval()(images)
    stored = {k: v.clone() for k, v in visual.state_dict().items()}
    tower = peft.peft_tower(visual, "ssf", 10, is_vit=False).train()
    assert tower.width == 16 and not tower.visual.training  # the classifier reads the 16-wide embedding
    torch.testing.assert_close(tower(images), frozen * tower.ssf.scale + tower.ssf.shift)
    assert all(torch.equal(v, stored[k]) for k, v in visual.state_dict().items())  # running statistics unchanged
    bitfit = peft.peft_tower(visual, "bitfit", 10, is_vit=False).train()
    torch.testing.assert_close(bitfit(images), frozen)


def test_adaptformers_learned_scale_multiplies_its_output():
    """AdaptFormer's bottleneck ends in a learnable scale (LIFT's ``AdaptFormer``); the adapter's has none."""
    torch.manual_seed(0)
    scaled, plain = peft.Bottleneck(8, 2, scaled=True), peft.Bottleneck(8, 2, scaled=False)
    with torch.no_grad():
        scaled.up_proj.weight.normal_()  # as after training: no longer 0
        scaled.scale.fill_(2.0)
    plain.load_state_dict({k: v for k, v in scaled.state_dict().items() if k != "scale"})
    x = torch.randn(3, 8)
    assert plain.scale is None and plain(x).abs().sum() > 0
    torch.testing.assert_close(scaled(x), 2.0 * plain(x))


def test_what_lift_does_not_define_is_refused_word_for_word():
    """An unknown method, a transformer-only method on a ResNet tower, and transformer towers whose blocks are
    not CLIP's (attention pooling, sequence-first blocks, cross-attention, another attention, no MLP)."""
    from open_clip.modified_resnet import ModifiedResNet

    def refusal(visual, method="lift", **kwargs):
        with pytest.raises(UserError) as refused:
            peft.peft_tower(visual, method, 10, **kwargs)
        return str(refused.value)

    assert refusal(tiny_visual(), "nope", is_vit=True) == (
        "unknown parameter-efficient method 'nope' (one of lift, adapter, lora, bitfit, ssf, vpt_shallow, vpt_deep)")
    resnet = ModifiedResNet(layers=(1, 1, 1, 1), output_dim=16, heads=2, image_size=64, width=8)
    assert refusal(resnet, is_vit=False) == "lift needs a transformer image tower; for this backbone use one of bitfit, ssf"
    odd = {"attention pooling": lambda v: setattr(v, "attn_pool", torch.nn.Identity()),
           "sequence first": lambda v: setattr(v.transformer, "batch_first", False),
           "cross-attention": lambda v: setattr(v.transformer.resblocks[1], "ln_1_kv", torch.nn.Identity()),
           "another attention": lambda v: setattr(v.transformer.resblocks[1], "attn", torch.nn.Identity()),
           "no MLP": lambda v: delattr(v.transformer.resblocks[1], "mlp")}
    for what, change in odd.items():
        visual = tiny_visual()
        change(visual)
        assert refusal(visual, is_vit=True, name="odd-vit") == \
            "parameter-efficient tuning needs CLIP-style transformer blocks; odd-vit has others", what
    older = tiny_visual()
    del older.transformer.batch_first  # a transformer that does not say is batch first (open_clip's own)
    assert peft.peft_tower(older, "lift", 10, is_vit=True).width == 64


def test_ssf_scales_and_shifts_each_feature_or_channel():
    """SSF (Lian et al. 2022): ``x * scale + shift`` over the last dimension of tokens, over the channels
    of an NCHW map (LIFT's ResNet ``ssf_attn`` on the pooled embedding reads 2-D features)."""
    ssf = peft.SSF(5)
    with torch.no_grad():
        ssf.scale.copy_(torch.arange(1.0, 6.0))
        ssf.shift.copy_(torch.arange(5.0) / 10)
    tokens = torch.randn(2, 3, 5)
    torch.testing.assert_close(ssf(tokens), tokens * torch.arange(1.0, 6.0) + torch.arange(5.0) / 10)
    pooled = torch.randn(4, 5)
    torch.testing.assert_close(ssf(pooled), pooled * torch.arange(1.0, 6.0) + torch.arange(5.0) / 10)
    maps = torch.randn(2, 5, 3, 3)
    expected = torch.stack([maps[:, c] * (c + 1) + c / 10 for c in range(5)], dim=1)
    torch.testing.assert_close(ssf(maps), expected)


def test_ssf_starts_as_lift_draws_it():
    """LIFT's SSF: scale ~ N(1, 0.02), shift ~ N(0, 0.02), one of each per feature (4,096 draws: their mean
    and spread within a few standard errors)."""
    torch.manual_seed(0)
    ssf = peft.SSF(4096)
    for param, mean in ((ssf.scale, 1.0), (ssf.shift, 0.0)):
        assert param.shape == (4096,) and param.requires_grad
        assert abs(param.mean().item() - mean) < 0.002 and 0.018 < param.std().item() < 0.022


def test_bottleneck_starts_as_lift_draws_it():
    """LIFT's Adapter/AdaptFormer: down-projection Kaiming normal with a = sqrt(5) (std sqrt(1/3) / sqrt(fan-in):
    16,384 draws within 2 %), up-projection and both biases 0."""
    torch.manual_seed(0)
    module = peft.Bottleneck(256, 64, scaled=True)
    assert abs(module.down_proj.weight.std().item() / ((1 / 3) ** 0.5 / 16) - 1) < 0.02
    for zero in (module.down_proj.bias, module.up_proj.weight, module.up_proj.bias):
        assert not zero.any()
    assert module.scale.tolist() == [1.0]


def test_lora_starts_as_lift_draws_it():
    """LIFT's LoRA: A ~ Kaiming uniform with a = sqrt(5) over its rank (fan-in r: bound sqrt(1 / r)), B = 0."""
    torch.manual_seed(0)
    lora = peft.LoRA(64, 4)
    bound = (1 / 4) ** 0.5
    assert 0.95 * bound < lora.lora_A.abs().max() <= bound  # 256 draws come within 5 % of the bound
    assert torch.equal(lora.lora_B, torch.zeros(4, 64)) and lora.scaling == 1 / 4
