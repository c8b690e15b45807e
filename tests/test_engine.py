"""The training engine on the embedded dataset, in-process, with tiny budgets."""
import copy

import pytest
import torch

from lvmbench import config
from lvmbench.models.classifier import DecoderClassifier
from lvmbench.train.loop import Trainer, lr_factor, train_run

from .conftest import TINY, make_run


@pytest.fixture(scope="module")
def stage1(tmp_path_factory, random_tiny_clip):
    runs = tmp_path_factory.mktemp("runs")
    run = make_run(runs, "ce", random_tiny_clip)
    status = train_run(run)
    assert status["status"] == "finished"
    return run


def test_lr_schedule_warmup_then_cosine():
    assert lr_factor(0, 4, 20) == pytest.approx(0.25)
    assert lr_factor(3, 4, 20) == pytest.approx(1.0)
    assert lr_factor(12, 4, 20) == pytest.approx(0.5)  # half-way through the cosine
    assert lr_factor(20, 4, 20) == pytest.approx(0.0)


def test_stage1_run_writes_its_directory(stage1):
    status = stage1.status()
    assert status["stage"] == 1 and status["trainable_params"] > 0 and status["total_params"] > status["trainable_params"]
    assert (stage1.ckpt_dir / "model.pt").exists()
    test = stage1.evaluation("test")
    assert test["n_samples"] == 1000 and 0 <= test["overall"] <= 100
    assert len(stage1.per_class("test")) == 10
    steps = [m["step"] for m in stage1.metrics() if "loss" in m]
    assert steps == [2, 4, 6]
    assert any("val/overall" in m for m in stage1.metrics())


def test_frozen_backbone_gets_no_gradient(stage1, random_tiny_clip):
    trainer = Trainer(stage1)
    assert not any(p.requires_grad for p in trainer.backbone.parameters())
    assert not trainer.backbone.training


@pytest.mark.parametrize("method,trainable", [("crt", None), ("lws", 10), ("disalign", None), ("marc", 20)])
def test_stage2_trains_only_its_parameters(stage1, random_tiny_clip, method, trainable):
    run = make_run(stage1.path.parent, method, random_tiny_clip, **{"stage1.run_id": stage1.run_id})
    trainer = Trainer(run)
    model = trainer.task.model
    s1 = DecoderClassifier.from_spec(stage1.spec(), 64, 10)
    s1.load_state_dict(torch.load(stage1.ckpt_dir / "model.pt", weights_only=True))
    decoder_before = copy.deepcopy(model.stage1.decoder.state_dict())
    backbone_before = copy.deepcopy(trainer.backbone.state_dict())
    head_before = copy.deepcopy(model.stage1.head.state_dict())
    if method == "crt":  # cRT re-initialises the classifier (Kang et al. 2020)
        assert not torch.equal(head_before["weight"], s1.head.weight)
    else:
        assert torch.equal(head_before["weight"], s1.head.weight)
    assert trainer.task.sampler == ("balanced" if method in ("crt", "lws") else "instance")
    trainer.fit(lambda record: None)
    for k, v in model.stage1.decoder.state_dict().items():
        assert torch.equal(v, decoder_before[k]), k
    for k, v in trainer.backbone.state_dict().items():
        assert torch.equal(v, backbone_before[k]), k
    head_changed = not torch.equal(model.stage1.head.weight, head_before["weight"])
    assert head_changed == (method == "crt")
    if trainable:
        assert sum(p.numel() for p in trainer.task.trainable()) == trainable


def test_same_seed_same_metrics(tmp_path, random_tiny_clip):
    a = make_run(tmp_path, "balanced_softmax", random_tiny_clip)
    b = make_run(tmp_path, "balanced_softmax", random_tiny_clip)
    train_run(a)
    train_run(b)
    assert a.evaluation("test") == b.evaluation("test")
    assert a.per_class("test") == b.per_class("test")


def test_data_workers_auto():
    from lvmbench.train.loop import data_workers

    assert data_workers(-1, torch.device("cpu")) == 0
    assert 1 <= data_workers(-1, torch.device("cuda")) <= 8
    assert data_workers(3, torch.device("cpu")) == 3
