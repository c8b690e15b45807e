"""What a run did, read back from its own records: the learning rate of every step, the weight decay
of every parameter group, the split and step that chose the evaluated weights, and a resume that
must carry the best-so-far over. The helpers (``lr_factor``, the parameter groups) are unit-tested
elsewhere; these tests check that the training loop really uses them (slow: they train)."""
import math

import pytest
import torch

from lvmbench import config
from lvmbench.runs import scheduler
from lvmbench.train import checkpoint
from lvmbench.train.loop import Trainer, build_optimizer, optimizer_summary, train_run


# Random tiny-clip weights at a high learning rate: validation accuracy peaks early (at step 8) and falls
# after it, so the best-on-validation weights are not the final ones (the preconditions below
# say so if that ever stops being true). Every step is logged; a checkpoint and a validation every 4 steps.
ITERS, WARMUP, EVAL_EVERY = 16, 3, 4
BUDGET = [f"train.iters={ITERS}", "train.batch_size=16", f"train.eval_every={EVAL_EVERY}",
          f"train.warmup_iters={WARMUP}", "train.log_every=1", "train.threads=1", "ckpt.every=4", "train.lr=0.05"]


# The cosine's cycles per recipe: both train with the study's schedule, USB's
# get_cosine_schedule_with_warmup with num_cycles=7/16 (the last step runs at about 0.2 x lr).
COSINE_CYCLES = {"paper": 7 / 16, "reference": 7 / 16}


def expected_lr_factor(step: int, warmup: int, total: int, recipe: str) -> float:
    """The schedule a run must follow, written independently of the loop: the factor of the base
    learning rate after ``step`` updates (the value logged at ``step``, which the next update uses).
    Linear warm-up from 0 over ``warmup`` updates, then ``max(0, cos(pi * cycles * progress))``.

    The one place to change when a recipe's schedule changes."""
    if step < warmup:
        return step / warmup
    return max(0.0, math.cos(math.pi * COSINE_CYCLES[recipe] * (step - warmup) / (total - warmup)))


def wired_spec(ckpt: str, **extra) -> dict:
    return config.resolve("mnist-lt", "tiny-clip", "ce", pretrained=ckpt,
                          overrides={**config.parse_sets(BUDGET), **extra})


@pytest.fixture(scope="module")
def wired(tmp_path_factory, random_tiny_clip):
    """One uninterrupted run, read by every test below."""
    run = scheduler.prepare(wired_spec(random_tiny_clip), tmp_path_factory.mktemp("runs"))
    status = train_run(run)
    assert status["status"] == "finished"
    return run


def series(run, key: str) -> dict[int, float]:
    return {m["step"]: m[key] for m in run.metrics() if key in m}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", config.RECIPES)
def test_the_logged_learning_rate_follows_the_schedule_step_by_step(recipe, tmp_path, random_tiny_clip):
    iters = 12
    run = scheduler.prepare(wired_spec(random_tiny_clip, recipe=recipe, **{"train.iters": iters,
                                                                         "train.eval_every": iters}), tmp_path)
    train_run(run)
    spec = run.spec()
    lr = series(run, "lr")
    assert sorted(lr) == list(range(1, iters + 1))  # train.log_every=1: every step
    for step, value in lr.items():
        expected = spec["train.lr"] * expected_lr_factor(step, WARMUP, iters, recipe)
        assert value == pytest.approx(expected, rel=1e-6, abs=1e-12), f"lr at step {step}"
    assert lr[iters] > 0.15 * spec["train.lr"]  # 7/16 of a cycle: the schedule does not decay to 0


@pytest.mark.slow
def test_weight_decay_spares_biases_and_norms_in_the_optimizer_the_run_used(wired):
    spec = wired.spec()
    groups = wired.status()["optimizer"]
    trainer = Trainer(wired)
    model = trainer.task.model
    norms = {f"{prefix}.{name}".lstrip(".") for prefix, module in model.named_modules()
             if isinstance(module, (torch.nn.LayerNorm, torch.nn.BatchNorm1d, torch.nn.GroupNorm))
             for name, _ in module.named_parameters(recurse=False)}
    trainable = {name: list(p.shape) for name, p in model.named_parameters() if p.requires_grad}
    seen = {}
    for group in groups:
        for name, shape in group["params"].items():
            assert name not in seen, f"{name} is in two parameter groups"
            seen[name] = (group["weight_decay"], shape)
    assert {name: shape for name, (_, shape) in seen.items()} == trainable  # every trainable parameter, once
    assert spec["train.weight_decay"] > 0
    for name, (decay, _) in seen.items():
        spared = name.endswith("bias") or name in norms
        assert decay == (0.0 if spared else spec["train.weight_decay"]), name
    assert any(decay == 0.0 for decay, _ in seen.values()) and any(decay > 0 for decay, _ in seen.values())

    # The summary describes the optimizer that stepped: the checkpoint's optimizer state has the same
    # groups, decays, and a momentum buffer of each recorded shape, in order.
    state = torch.load(wired.checkpoint_file, map_location="cpu", weights_only=False)["optimizer"]
    assert [g["weight_decay"] for g in state["param_groups"]] == [g["weight_decay"] for g in groups]
    for saved, recorded in zip(state["param_groups"], groups):
        shapes = [list(state["state"][i]["momentum_buffer"].shape) for i in saved["params"]]
        assert shapes == list(recorded["params"].values())


def test_the_optimizer_summary_names_each_groups_parameters_and_decay():
    """Fast: biases and norm weights in a group without decay, matrices with ``train.weight_decay``."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 2, bias=False))
    spec = {"train.weight_decay": 0.01, "train.optimizer": "sgd", "train.lr": 0.1, "train.momentum": 0.9,
            "train.nesterov": True}
    for optimizer_name in ("sgd", "adamw"):
        optimizer = build_optimizer({**spec, "train.optimizer": optimizer_name}, list(model.parameters()),
                                    torch.device("cpu"))
        assert optimizer_summary(model, optimizer) == [
            {"weight_decay": 0.01, "params": {"0.weight": [3, 4], "2.weight": [2, 3]}},
            {"weight_decay": 0.0, "params": {"0.bias": [3], "1.weight": [3], "1.bias": [3]}}]
        assert all(g["lr"] == 0.1 for g in optimizer.param_groups)
        assert type(optimizer).__name__.lower() == optimizer_name
    sgd = build_optimizer(spec, list(model.parameters()), torch.device("cpu"))
    assert sgd.defaults["momentum"] == 0.9 and sgd.defaults["nesterov"] and sgd.defaults["foreach"]
    every = build_optimizer({**spec, "train.decay_params": "all"}, list(model.parameters()), torch.device("cpu"))
    assert [g["weight_decay"] for g in every.param_groups if g["params"]] == [0.01]  # every parameter decays
    assert not build_optimizer({**spec, "train.momentum": 0.0}, list(model.parameters()),
                               torch.device("cpu")).defaults["nesterov"]  # Nesterov needs momentum


def selection(run) -> tuple[str, int, dict[int, float]]:
    """(split that chose the weights, the step chosen, that split's logged overall accuracy per step)."""
    status = run.status()
    split = status["selected_on"]
    return split, status["best_step"], series(run, f"{split}/overall")


@pytest.mark.slow
def test_the_evaluated_weights_are_the_best_on_validation(wired):
    split, best_step, scores = selection(wired)
    assert split == "val"  # mnist-lt has a validation split: the test split never chooses
    assert sorted(scores) == list(range(EVAL_EVERY, ITERS + 1, EVAL_EVERY))
    first_best = max(scores, key=lambda s: (scores[s], -s))
    assert best_step == first_best
    assert best_step < ITERS and scores[ITERS] < scores[best_step], "precondition: the last weights are not the best"
    # The validation result stored for the run is that of the weights at best_step ...
    assert wired.evaluation("val")["overall"] == scores[best_step]
    # ... and both stored evaluations are those of the best weights kept in the checkpoint.
    trainer = Trainer(wired)
    best = torch.load(wired.checkpoint_file, map_location="cpu", weights_only=False)["best"]
    assert best["step"] == best_step
    checkpoint.load_model_state(trainer.task.model, best["state"])
    for name in ("val", "test"):
        assert trainer.evaluate(name).to_dict() == {k: v for k, v in wired.evaluation(name).items() if k != "split"}


class Killed(Exception):
    """Stands for a SIGKILL: the training stops at once, its last checkpoint stays."""


@pytest.mark.slow
def test_a_resumed_run_keeps_the_best_it_had_before_the_kill(wired, tmp_path, random_tiny_clip):
    _, best_step, scores = selection(wired)
    kill = 10  # the last checkpoint before the kill is at step 8
    assert best_step <= 8 and all(scores[s] < scores[best_step] for s in scores if s > best_step), \
        "precondition: the best validation step comes before the kill and is never beaten"
    run = scheduler.prepare(wired_spec(random_tiny_clip), tmp_path)

    def log(record):
        if record["step"] == kill:
            raise Killed

    with pytest.raises(Killed):
        Trainer(run).fit(log)
    assert torch.load(run.checkpoint_file, weights_only=False)["step"] == 8

    status = train_run(run)  # finds ckpt/last.pt and continues from step 8
    assert min(m["step"] for m in run.metrics()) == 9
    assert status["best_step"] == best_step
    for name in ("val", "test"):
        assert run.evaluation(name) == wired.evaluation(name)


class LabelRecorder(torch.nn.Module):
    """The run's own loss, noting the labels of every batch the loop trains on."""

    def __init__(self, loss):
        super().__init__()
        self.loss, self.labels = loss, []

    def forward(self, logits, labels):
        self.labels.append(labels.cpu())
        return self.loss(logits, labels)


# chi-square quantile, 9 degrees of freedom (10 classes), p = 0.001
CHI2_9_P001 = 27.88
STUDY_EPOCHS = 32  # the study's generator sets epoch: 32, its samplers draw num_train_iter // 32 batches per epoch


def expected_shares(recipe: str, train_labels: torch.Tensor, steps: int, batch: int) -> torch.Tensor:
    """The share of each class among the labels a class-balanced run draws, per recipe.

    reference: a class uniformly, then one of its samples (Kang et al. 2020): 1/10 each.
    paper: the study's WeightedDistributedSampler (Imbalance-VLM, imblearn/datasets/samplers/sampler.py):
    weights 1/n_y, ``torch.multinomial(weights, epoch_samples, replacement=False)`` for each epoch of
    ``steps // 32`` batches; estimated here by drawing 4000 such epochs that way.
    """
    classes = int(train_labels.max()) + 1
    if recipe == "reference":
        return torch.full((classes,), 1 / classes, dtype=torch.double)
    weights = 1.0 / torch.bincount(train_labels).double()[train_labels]
    epoch_samples = max(1, steps // STUDY_EPOCHS) * batch
    generator = torch.Generator().manual_seed(0)
    draws = torch.cat([train_labels[torch.multinomial(weights, epoch_samples, replacement=False, generator=generator)]
                       for _ in range(4000)])
    return torch.bincount(draws, minlength=classes).double() / len(draws)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", config.RECIPES)
def test_a_class_balanced_run_trains_on_class_balanced_batches(recipe, tmp_path, random_tiny_clip):
    """cRT (Kang et al. 2020) retrains its classifier on class-balanced batches: the labels the loop
    really trains on, over 120 steps of 16 images, are spread over mnist-lt's 10 classes (whose training
    counts run from 700 down to 7) as the recipe's sampler spreads them."""
    shallow = {"decoder.depth": 1, "recipe": recipe}
    stage1 = scheduler.prepare(wired_spec(random_tiny_clip, **shallow, **{"train.iters": 2, "train.eval_every": 2}),
                            tmp_path)
    train_run(stage1)
    steps, batch = 120, 16
    spec = config.resolve("mnist-lt", "tiny-clip", "crt", pretrained=random_tiny_clip, overrides={
        **config.parse_sets([f"train.iters={steps}", f"train.batch_size={batch}", f"train.eval_every={steps}",
                             "train.threads=1", "train.log_every=50", "cache.mode=train"]),
        **shallow, "stage1.run_id": stage1.run_id})
    run = scheduler.prepare(spec, tmp_path)
    trainer = Trainer(run)
    recorder = LabelRecorder(trainer.task.loss)
    trainer.task.loss = recorder
    trainer.fit(lambda record: None)
    drawn = torch.cat(recorder.labels)
    assert len(drawn) == steps * batch
    observed = torch.bincount(drawn, minlength=10).double()
    train_labels = torch.as_tensor(trainer.dataset.train.labels)
    expected = expected_shares(recipe, train_labels, steps, batch) * len(drawn)
    chi2 = ((observed - expected) ** 2 / expected).sum().item()
    assert chi2 < CHI2_9_P001, (f"labels drawn per class {observed.tolist()}, expected {expected.round().tolist()} "
                                f"(chi2 {chi2:.0f})")
    counts = torch.bincount(train_labels).double()
    assert counts.max() >= 50 * counts.min()  # an instance-sampled run would be far from balanced
    instance = counts / counts.sum() * len(drawn)
    assert ((observed - instance) ** 2 / instance).sum() > 100 * CHI2_9_P001

    # Stage 2's optimizer: the study's decays matrices only; the authors' (reference) decays every parameter.
    decayed = {name for g in run.status()["optimizer"] if g["weight_decay"] > 0 for name in g["params"]}
    trainable = {name for name, p in trainer.task.model.named_parameters() if p.requires_grad}
    assert decayed == ({n for n in trainable if not n.endswith("bias")} if recipe == "paper" else trainable)
