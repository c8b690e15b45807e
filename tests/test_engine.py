"""The training engine on the embedded dataset, in-process, with tiny budgets."""
import copy
import math

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
    # Both recipes run the study's schedule (warm-up from 0, cosine over 7/16 of a cycle);
    # train.cosine_cycles=0.5 is a quarter of a cosine period that ends at 0.
    assert lr_factor(0, 4, 20) == 0.0 and lr_factor(2, 4, 20) == pytest.approx(0.5)
    assert lr_factor(4, 4, 20) == pytest.approx(1.0)
    assert lr_factor(12, 4, 20, cycles=0.5) == pytest.approx(math.sqrt(0.5))  # half-way: cos(pi / 4)
    assert lr_factor(20, 4, 20, cycles=0.5) == pytest.approx(0.0)
    assert lr_factor(20, 4, 20) == pytest.approx(0.19509, abs=1e-5)  # cos(7 pi / 16)


def test_stage1_run_writes_its_directory(stage1):
    status = stage1.status()
    assert status["stage"] == 1 and status["trainable_params"] > 0 and status["total_params"] > status["trainable_params"]
    assert (stage1.ckpt_dir / "model.pt").exists()
    test = stage1.evaluation("test")
    assert test["n_samples"] == 1000 and 0 <= test["overall"] <= 100
    assert len(stage1.per_class("test")) == 10
    steps = [m["step"] for m in stage1.metrics() if "loss" in m]
    assert steps == [2, 4, 6]
    # every logged step says how long the step waited for its images; the run's mean is in its status
    waits = [m["loader_wait_s"] for m in stage1.metrics() if "loss" in m]
    assert len(waits) == 3 and all(w > 0 for w in waits)
    assert min(waits) <= status["loader_wait_s"] <= max(waits)
    assert any("val/overall" in m for m in stage1.metrics())
    assert status["selected_on"] == "val" and status["best_step"] in (3, 6)


def test_frozen_backbone_gets_no_gradient(stage1, random_tiny_clip):
    trainer = Trainer(stage1)
    assert not any(p.requires_grad for p in trainer.backbone.parameters())
    assert not trainer.backbone.training


@pytest.mark.parametrize("method,trainable,reinit", [("crt", None, False), ("crt", None, True), ("lws", 10, False),
                                                     ("disalign", None, False), ("marc", 20, False)])
def test_stage2_trains_only_its_parameters(stage1, random_tiny_clip, method, trainable, reinit):
    # tiny-clip is a ViT: the study's cRT (recipe=paper) keeps its classifier, crt.reinit=always re-initialises it
    extra = {"crt.reinit": "always"} if reinit else {}
    run = make_run(stage1.path.parent, method, random_tiny_clip, **{"stage1.run_id": stage1.run_id}, **extra)
    trainer = Trainer(run)
    model = trainer.task.model
    s1 = DecoderClassifier.from_spec(stage1.spec(), 64, 10)
    s1.load_state_dict(torch.load(stage1.ckpt_dir / "model.pt", weights_only=True))
    decoder_before = copy.deepcopy(model.stage1.decoder.state_dict())
    backbone_before = copy.deepcopy(trainer.backbone.state_dict())
    head_before = copy.deepcopy(model.stage1.head.state_dict())
    if reinit:  # cRT as Kang et al. 2020 define it re-initialises the classifier
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


@pytest.mark.parametrize("method,extra", [("cbs", {"data.transform": "study"}),
                                          ("ldam", {"recipe": "reference", "train.select": "final"})])
def test_recipe_paths_train_end_to_end(tmp_path, random_tiny_clip, method, extra, monkeypatch):
    """The study's sampler and transforms (cbs under paper), and LDAM-DRW with a cosine head under
    reference, on the real training path; status.json says which split chose the weights. LDAM-DRW
    re-weights from 80 % of training: of TINY's 6 steps, the last (progress 5/6) only."""
    from lvmbench.methods.losses import LDAMLoss

    reweighted = []
    forward = LDAMLoss.forward
    monkeypatch.setattr(LDAMLoss, "forward", lambda self, *a: reweighted.append(self.drw_active) or forward(self, *a))
    run = make_run(tmp_path, method, random_tiny_clip, **extra)
    status = train_run(run)
    assert reweighted == ([False] * 5 + [True] if method == "ldam" else [])
    assert status["status"] == "finished"
    assert status["selected_on"] == ("final" if extra.get("train.select") == "final" else "val")
    assert (status["best_step"] is None) == (status["selected_on"] == "final")
    assert 0 <= run.evaluation("test")["overall"] <= 100


# -- the recipe a run names is the one its pieces are built with (spec.json -> Trainer -> registry) -------

def trainer_of(runs, ckpt, method, recipe, **extra):
    return Trainer(make_run(runs, method, ckpt, recipe=recipe, **extra))


def test_a_runs_recipe_reaches_its_loss(tmp_path, random_tiny_clip):
    """LADE differs by recipe (the authors' epsilon inside log pi, ``lvmbench.methods.losses``): the loss a
    run trains with is the one of its own recipe, not the study's whatever the recipe says."""
    from lvmbench.methods.losses import build_loss

    torch.manual_seed(0)
    logits, targets = torch.randn(64, 10) * 3, torch.arange(64) % 10
    got, expected = {}, {}
    for recipe in ("paper", "reference"):
        trainer = trainer_of(tmp_path, random_tiny_clip, "lade", recipe)
        assert trainer.spec["recipe"] == recipe
        got[recipe] = trainer.task.loss(logits, targets).item()
        counts = trainer.dataset.train_counts
        expected[recipe] = build_loss("lade", counts, recipe, **config.loss_hparams(trainer.spec))(logits, targets).item()
    assert got == expected
    assert got["paper"] != got["reference"]  # the two recipes' LADE tell apart on these logits


def test_disaligns_confidence_starts_as_its_recipe_says(stage1, random_tiny_clip):
    """DisAlign's confidence layer: the authors' constant 0.1 under ``reference`` (recipe profile
    ``disalign.confidence_init=authors``), PyTorch's default init under ``paper``."""
    weights = {}
    for recipe in ("paper", "reference"):
        trainer = trainer_of(stage1.path.parent, random_tiny_clip, "disalign", recipe,
                             **{"stage1.run_id": stage1.run_id})
        confidence = [m for m in trainer.task.model.modules() if hasattr(m, "confidence")][0].confidence
        weights[recipe] = confidence.weight.detach()
    assert torch.all(weights["reference"] == 0.1)
    assert not torch.all(weights["paper"] == 0.1)


@pytest.mark.parametrize("eval_norm", ["fresh", "stage1"])
def test_marc_final_evaluation_reads_the_norms_marc_eval_norm_names(stage1, random_tiny_clip, eval_norm):
    """finish_run saves the trained model (the stage-1 norms it trained with), then evaluates with the norms
    of marc.eval_norm: a freshly initialised classifier's (the study's eval.py) or the stage-1 classifier's."""
    from lvmbench.methods.stage2 import fresh_row_norms
    from lvmbench.train.loop import finish_run

    run = make_run(stage1.path.parent, "marc", random_tiny_clip, **{"stage1.run_id": stage1.run_id,
                                                                   "marc.eval_norm": eval_norm})
    trainer = Trainer(run)
    trainer.fit(lambda record: None)
    trained_norms = trainer.task.model.stage1.head.weight.norm(dim=1)
    finish_run(trainer)
    saved = torch.load(run.model_file, weights_only=True)["adjuster.weight_norm"]
    torch.testing.assert_close(saved, trained_norms)
    expected = fresh_row_norms(10, 64, run.spec()["seed"]) if eval_norm == "fresh" else trained_norms
    torch.testing.assert_close(trainer.task.model.adjuster.weight_norm, expected)
    assert run.evaluation("test") is not None
