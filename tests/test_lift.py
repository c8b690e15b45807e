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
from lvmbench.runs.plan import prepare
from lvmbench.train.loop import train_run

from .test_resume import kill_at, last_per_step


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
    assert last_per_step(run) == last_per_step(reference)


def hand_crops(image, size: int, expand: int):
    """The four corners and the centre of the image resized to size + expand, cut by hand (PIL boxes)."""
    from torchvision.transforms import functional as TF

    big = TF.resize(image, size + expand)
    w, h = big.size
    left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
    boxes = [(0, 0), (w - size, 0), (0, h - size), (w - size, h - size), (left, top)]
    return [big.crop((x, y, x + size, y + size)) for x, y in boxes]


def test_tte_predictions_are_a_hand_made_ensemble_of_five_crops(store):
    """A zero-shot run with eval.tte=true scores what averaging its logits over five crops by hand scores."""
    from torchvision.transforms import functional as TF

    _, runs = store
    spec = config.resolve("mnist-lt", "tiny-clip", "zeroshot",
                          overrides=config.parse_sets(["eval.tte=true", "eval.tte_expand=6", "train.threads=1",
                                                            "encoder.precision=fp32"]))
    run = prepare(spec, runs)
    train_run(run)
    assert run.spec()["eval.tte"] is True  # recorded in the run's spec (and its config hash)
    dataset = build_dataset(spec)
    backbone = Backbone("tiny-clip", "embedded")
    model = build_task(spec, backbone, dataset, run.path).model.eval()
    split = dataset.split("test")
    correct = 0
    with torch.no_grad():
        for i in range(len(split)):
            crops = torch.stack([TF.normalize(TF.to_tensor(c), backbone.mean, backbone.std)
                                 for c in hand_crops(split.load(i), 28, 6)])
            logits = model(backbone.pooled(crops))
            correct += int(logits.mean(0).argmax()) == int(split.labels[i])
    assert run.evaluation("test")["overall"] == pytest.approx(100.0 * correct / len(split), abs=1e-9)
    plain = prepare(config.resolve("mnist-lt", "tiny-clip", "zeroshot",
                                          overrides=config.parse_sets(["train.threads=1", "encoder.precision=fp32"])), runs)
    train_run(plain)
    assert plain.evaluation("test")["overall"] != run.evaluation("test")["overall"]  # the crops do change it
