"""LIFT's methods end to end: the spec they resolve to, the task they build, resume of a PEFT run."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lvmbench import catalog, config
from lvmbench.data import build_dataset
from lvmbench.errors import UserError
from lvmbench.methods.build import build_task
from lvmbench.methods.text_head import zero_shot_weights
from lvmbench.models import peft
from lvmbench.models.backbone import Backbone
from lvmbench.runs import scheduler
from lvmbench.runs.scheduler import prepare
from lvmbench.train.loop import train_run

from .conftest import trained_metrics
from .test_resume import kill_at


def test_catalog_lists_every_peft_method_with_lifts_loss():
    peft_methods = [m for m in catalog.METHODS.values() if m.kind == "peft"]
    assert tuple(m.name for m in peft_methods) == peft.METHODS
    assert all(m.loss == "logit_adjust" for m in peft_methods)


def test_lift_defaults_come_from_lifts_configs():
    spec = config.resolve("imagenet-lt", "ViT-B-16", "lift")
    assert (spec["train.optimizer"], spec["train.lr"], spec["train.momentum"], spec["train.nesterov"]) == \
        ("sgd", 0.01, 0.9, False)
    assert (spec["train.weight_decay"], spec["train.decay_params"], spec["train.batch_size"]) == (5e-4, "all", 128)
    assert (spec["train.warmup_iters"], spec["train.schedule"], spec["train.epochs"]) == (0, "lift", 10)
    assert (spec["head.kind"], spec["head.scale"], spec["head.init"]) == ("cosine", 25.0, "text")
    assert spec["loss"] == "logit_adjust" and spec["zeroshot.templates"] == "simple"
    assert spec["train.iters"] == 9060  # 10 epochs of ceil(115,846 / 128)
    inat = config.resolve("inat18", "ViT-B-16", "vpt_deep")
    assert (inat["train.iters"], inat["train.epochs"]) == (20 * 3419, 20)
    short = config.resolve("mnist-lt", "tiny-clip", "lift")
    assert short["train.iters"] == 300 and short["train.lr"] == 0.01  # the embedded default's short budget


def test_peft_settings_are_refused_elsewhere():
    with pytest.raises(UserError, match="peft.* applies to methods of kind peft"):
        config.resolve("mnist-lt", "tiny-clip", "ce", overrides={"peft.bottleneck": 8})
    assert config.resolve("mnist-lt", "tiny-clip", "lora", overrides={"peft.bottleneck": 8})["peft.bottleneck"] == 8


@pytest.fixture(scope="module")
def tiny():
    spec = config.resolve("mnist-lt", "tiny-clip", "lift")
    return spec, build_dataset(spec)


@pytest.mark.parametrize("method", ["lift", "lora", "adapter", "bitfit"])
def test_task_starts_as_the_frozen_tower_with_a_text_initialised_head(tiny, tmp_path, method):
    spec, dataset = tiny
    spec = {**spec, "method": method}
    backbone = Backbone("tiny-clip", "embedded")
    task = build_task(spec, backbone, dataset, tmp_path)
    assert task.feature == "images" and task.loss is not None
    visual = backbone.clip.visual
    text = zero_shot_weights(spec, backbone, dataset)
    expected_weight = F.normalize(text @ visual.proj.t(), dim=-1)  # LIFT's init_head_text_feat for a ViT
    torch.testing.assert_close(task.model.head.weight.detach(), expected_weight)
    images = torch.randn(5, 3, 28, 28)
    with torch.no_grad():
        frozen = visual._pool(visual.transformer(visual._embeds(images)))[0]
        expected = 25.0 * F.normalize(frozen, dim=-1) @ expected_weight.t()
        torch.testing.assert_close(task.model.eval()(images), expected, rtol=1e-4, atol=1e-4)
    tuned = {n for n, p in task.model.named_parameters() if p.requires_grad}
    assert {n for n in tuned if n.startswith("head.")} == {"head.weight"}


def test_the_task_takes_the_runs_prompt_length_and_names_its_backbone_in_a_refusal(tiny, tmp_path):
    """``peft.vpt_len`` reaches the prompts the run trains; a method LIFT defines on transformer towers only
    is refused for a ResNet tower by the backbone's name."""
    from types import SimpleNamespace

    from lvmbench.methods.lift import peft_task

    spec, dataset = tiny
    backbone = Backbone("tiny-clip", "embedded")
    task = build_task({**spec, "method": "vpt_deep", "peft.vpt_len": 3}, backbone, dataset, tmp_path)
    assert [p.prompt.shape[0] for p in task.model.tower.prompts] == [3] * len(task.model.tower.prompts)
    resnet = SimpleNamespace(clip=backbone.clip, is_vit=False, name="RN50")
    with pytest.raises(UserError) as refused:
        peft_task(SimpleNamespace(spec=spec, backbone=resnet, dataset=dataset, info=catalog.method("lift"), loss=None))
    assert str(refused.value).startswith("lift needs a transformer image tower; for RN50 use one of ")


@pytest.mark.slow
def test_killed_peft_run_resumes_exactly_and_checkpoints_only_what_trains(store, random_tiny_clip):
    _, runs = store
    budget = ["train.iters=16", "train.batch_size=16", "train.eval_every=8", "train.log_every=1",
              "train.threads=1", "ckpt.every=5"]
    spec = config.resolve("mnist-lt", "tiny-clip", "lift", pretrained=random_tiny_clip,
                          overrides=config.parse_sets(budget))
    reference = prepare(spec, runs)
    train_run(reference)
    run = prepare(spec, runs)
    assert kill_at(run, 7)["status"] == "killed"
    saved = torch.load(run.checkpoint_file, map_location="cpu", weights_only=False)["model"]
    assert saved and all(k.startswith(("tower.tuner.", "head.")) for k in saved), sorted(saved)[:5]
    resumed, owner = scheduler.resumable(runs, run.run_id)
    resumed.reopen()
    owner.release()
    status = train_run(run)
    assert status["status"] == "finished" and status["resumes"] == 1
    assert status["trainable_params"] == 4 * (3 * 64 + 2 * 64 * 1 + 1 + 1) + 10 * 64  # tower tuner + head
    for split in ("val", "test"):
        assert run.evaluation(split) == reference.evaluation(split)
    assert trained_metrics(run) == trained_metrics(reference)


def hand_crops(image, size: int, expand: int, mode: str = "fivecrop"):
    """The four corners and the centre of the image resized to size + expand, cut by hand (PIL boxes);
    ``tencrop``: the same five of the mirrored image too."""
    from PIL import Image
    from torchvision.transforms import functional as TF

    big = TF.resize(image, size + expand)
    w, h = big.size
    left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
    boxes = [(0, 0), (w - size, 0), (0, h - size), (w - size, h - size), (left, top)]
    images = [big, big.transpose(Image.FLIP_LEFT_RIGHT)] if mode == "tencrop" else [big]
    return [im.crop((x, y, x + size, y + size)) for im in images for x, y in boxes]


def test_tte_predictions_are_a_hand_made_ensemble_of_crops(store, mode="fivecrop"):
    """A zero-shot run with eval.tte=true scores what averaging its logits over the crops by hand scores.
    (The ten-crop mode's own parts, its crops and their count, are checked below without a second run.)"""
    from torchvision.transforms import functional as TF

    _, runs = store
    spec = config.resolve("mnist-lt", "tiny-clip", "zeroshot",
                          overrides=config.parse_sets(["eval.tte=true", "eval.tte_expand=6", "train.threads=1",
                                                       f"eval.tte_mode={mode}", "encoder.precision=fp32"]))
    run = prepare(spec, runs)
    train_run(run)
    assert run.spec()["eval.tte"] is True  # recorded in the run's spec (and its config hash)
    dataset = build_dataset(spec)
    backbone = Backbone("tiny-clip", "embedded")
    model = build_task(spec, backbone, dataset, run.path).model.eval()
    split = dataset.split("test")
    correct = 0
    with torch.no_grad():
        for start in range(0, len(split), 256):  # the run's evaluation batch
            chunk = range(start, min(start + 256, len(split)))
            crops = torch.stack([TF.normalize(TF.to_tensor(c), backbone.mean, backbone.std)
                                 for i in chunk for c in hand_crops(split.load(i), 28, 6, mode)])
            logits = model(backbone.pooled(crops)).view(len(chunk), -1, dataset.num_classes)
            correct += int((logits.mean(1).argmax(-1) == torch.as_tensor(split.labels[chunk.start:chunk.stop])).sum())
    assert run.evaluation("test")["overall"] == pytest.approx(100.0 * correct / len(split), abs=1e-9)
    plain = prepare(config.resolve("mnist-lt", "tiny-clip", "zeroshot",
                                          overrides=config.parse_sets(["train.threads=1", "encoder.precision=fp32"])), runs)
    train_run(plain)
    assert plain.evaluation("test")["overall"] != run.evaluation("test")["overall"]  # the crops do change it


@pytest.mark.parametrize("mode", ["fivecrop", "tencrop"])
def test_each_tte_mode_averages_the_logits_of_its_own_crops(mode):
    """What a run's evaluation does with ``eval.tte_mode``: the crops of ``CropsTransform`` (ten-crop: the
    five of the mirrored image too) and the mean of each image's consecutive rows of logits."""
    from torchvision.transforms import functional as TF

    from lvmbench.train import tte

    spec = config.resolve("mnist-lt", "tiny-clip", "zeroshot")
    split = build_dataset(spec).split("test")
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    transform = tte.CropsTransform(28, 6, mode, mean, std)
    for i in range(3):
        by_hand = torch.stack([TF.normalize(TF.to_tensor(c), mean, std) for c in hand_crops(split.load(i), 28, 6, mode)])
        torch.testing.assert_close(transform(split.load(i)), by_hand)
    crops = tte.CROPS[mode]
    assert crops == len(by_hand)
    logits = torch.randn(4 * crops, 7)
    expected = torch.stack([logits[k * crops:(k + 1) * crops].mean(0) for k in range(4)])
    torch.testing.assert_close(tte.average_logits(logits, crops), expected)


# -- the PEFT modules after training: what each one computes, against the tower's own blocks ------------

def hand_bottleneck(module, x):
    """LIFT's bottleneck, written out: LN -> down -> ReLU -> up (-> * scale)."""
    h = F.layer_norm(x, x.shape[-1:], module.ln.weight, module.ln.bias)
    h = F.linear(F.relu(F.linear(h, module.down_proj.weight, module.down_proj.bias)),
                 module.up_proj.weight, module.up_proj.bias)
    return h * module.scale if module.scale is not None else h


def attention_residual(block, x):
    """The residual stream after a block's attention: the input of its MLP (open_clip's own modules)."""
    return x + block.ls_1(block.attention(block.ln_1(x)))


def lora_merged(visual, tuner):
    """A copy of the tower whose query and value weights hold the LoRA update, ``W + (A B / r)^T``:
    the tower's own blocks then compute what LoRA computes (Hu et al. 2022, eq. 3)."""
    import copy

    merged = copy.deepcopy(visual)
    for block, mods in zip(merged.transformer.resblocks, tuner):
        width = block.attn.embed_dim
        with torch.no_grad():
            for name, rows in (("lora_q", slice(0, width)), ("lora_v", slice(2 * width, 3 * width))):
                lora = mods[name]
                rank = lora.lora_A.shape[1]
                block.attn.in_proj_weight[rows] += (lora.lora_A @ lora.lora_B / rank).t()
    return merged


def ssf_merged(visual, tuner):
    """A copy of the tower with every SSF folded into the layer it follows, as SSF's re-parameterisation does
    (Lian et al. 2022, eq. 5): ``(W x + b) * s + t`` is a layer of weight ``diag(s) W`` and bias ``s b + t``, and
    a LayerNorm's weight and bias scale and shift alike. LIFT inserts them after ln_1, the qkv projection, the
    attention's output projection, ln_2 and both MLP layers."""
    import copy

    merged = copy.deepcopy(visual)
    for block, mods in zip(merged.transformer.resblocks, tuner):
        follows = {"ssf_ln_1": (block.ln_1, "weight", "bias"), "ssf_attn_in": (block.attn, "in_proj_weight", "in_proj_bias"),
                   "ssf_attn_out": (block.attn.out_proj, "weight", "bias"), "ssf_ln_2": (block.ln_2, "weight", "bias"),
                   "ssf_mlp_in": (block.mlp.c_fc, "weight", "bias"), "ssf_mlp_out": (block.mlp.c_proj, "weight", "bias")}
        assert set(follows) == set(mods)
        with torch.no_grad():
            for name, (layer, weight, bias) in follows.items():
                scale, shift = mods[name].scale, mods[name].shift
                w = getattr(layer, weight)
                w.mul_(scale.view(-1, *[1] * (w.dim() - 1)))
                getattr(layer, bias).mul_(scale).add_(shift)
    return merged


def reference_features(method, tower, images):
    """What the tuned tower should compute, from the frozen tower's own blocks and the modules' weights."""
    visual = tower.visual
    if method in ("lora", "ssf"):
        merged = (lora_merged if method == "lora" else ssf_merged)(visual, tower.tuner)
        return merged._pool(merged.transformer(merged._embeds(images)))[0]
    x = visual._embeds(images)
    seq = x.shape[1]
    for i, (block, mods) in enumerate(zip(visual.transformer.resblocks, tower.tuner)):
        if method == "vpt_deep" or (method == "vpt_shallow" and i == 0):
            x = torch.cat([x[:, :seq], tower.prompts[i].prompt.expand(len(x), -1, -1)], dim=1)
        if method == "lift":  # AdaptFormer: parallel to the MLP, reading the MLP's input
            x = block(x) + hand_bottleneck(mods["adaptformer"], attention_residual(block, x))
        elif method == "adapter":  # Houlsby: in series, on the MLP's output
            mid = attention_residual(block, x)
            h = block.mlp(block.ln_2(mid))
            x = mid + h + hand_bottleneck(mods["adapter"], h)
        else:
            x = block(x)
    return visual._pool(x)[0]


@pytest.mark.parametrize("method", ["lift", "adapter", "lora", "ssf", "vpt_deep", "vpt_shallow"])
def test_a_trained_peft_tower_computes_what_its_method_defines(tiny, tmp_path, method):
    """At initialisation the modules are the identity (or one prompt), where a misplaced adapter, a
    wrong LoRA scale or deep prompts used in one layer only all look right: train a few steps through
    the task the registry builds (bottleneck / rank 4), then compare with the method written out."""
    spec, dataset = tiny
    spec = {**spec, "method": method, "peft.bottleneck": 4}
    torch.manual_seed(0)
    task = build_task(spec, Backbone("tiny-clip", "embedded"), dataset, tmp_path)
    model, tower = task.model, task.model.tower
    images, labels = torch.randn(16, 3, 28, 28), torch.arange(16) % 10
    frozen = reference_features("plain", tower, images).detach()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    for _ in range(3):
        optimizer.zero_grad()
        task.loss(model(images), labels).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        tuned, expected = tower(images), reference_features(method, tower, images)
    assert not torch.allclose(tuned, frozen, atol=1e-3)  # training moved the modules away from the identity
    torch.testing.assert_close(tuned, expected, rtol=1e-4, atol=1e-4)
    if method == "lora":
        assert tower.tuner[0]["lora_q"].lora_A.shape == (64, 4)
    if method == "vpt_deep":  # each block reads its own prompts
        with torch.no_grad():
            tower.prompts[-1].prompt.add_(torch.randn_like(tower.prompts[-1].prompt))
            assert not torch.allclose(tower(images), tuned, atol=1e-4)
