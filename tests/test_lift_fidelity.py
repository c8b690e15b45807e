"""LIFT's recipe against LIFT's code (shijxcs/LIFT): model selection, schedule, preprocessing and where its
scripts use test-time ensembling. LIFT's functions are transcribed here from its sources (never by calling
lvmbench), as tests/test_fidelity.py does for the study, and lvmbench is checked against them."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from lvmbench import catalog, config
from lvmbench.exec.grid import expand
from lvmbench.runs.plan import prepare
from lvmbench.sweep import build_axes
from lvmbench.train.loop import Trainer, schedule, train_run

PEFT = tuple(m for m, info in catalog.METHODS.items() if info.kind == "peft")
LIFT_DATASETS = ("imagenet-lt", "places-lt", "inat18")
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]  # trainer.py, build_data_loader, for CLIP backbones
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


# --------------------------------------------------------------------------- transcriptions of LIFT


def lift_lr_per_step(lr: float, epochs: int, batches: int) -> list[float]:
    """The lr each optimizer step of LIFT's ``Trainer.train`` uses: SGD with ``CosineAnnealingLR(optim,
    num_epochs)``, ``sched.step()`` after each epoch of ``batches`` batches (trainer.py)."""
    param = torch.nn.Parameter(torch.zeros(1))
    optim = torch.optim.SGD([{"params": [param]}], lr=lr, weight_decay=5e-4, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, epochs)
    used = []
    for _ in range(epochs):
        for _ in range(batches):
            used.append(optim.param_groups[0]["lr"])
            optim.step()
        sched.step()
    return used


def lift_transform(resolution: int, train: bool, mean=CLIP_MEAN, std=CLIP_STD):
    """LIFT's ``transform_train``, and ``transform_test`` without tte (its extra crop axis squeezed)."""
    from torchvision import transforms

    if train:
        return transforms.Compose([transforms.RandomResizedCrop(resolution), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(), transforms.Normalize(mean, std)])
    return transforms.Compose([transforms.Resize(resolution * 8 // 7), transforms.CenterCrop(resolution),
                               transforms.ToTensor(), transforms.Normalize(mean, std)])


# Which rows of LIFT's scripts evaluate with ``tte True`` (scripts/run_tab1to4_main_results.sh: adaptformer with
# test_only True tte True; scripts/run_tab6_peft_methods.sh: zsclip_vit_b16 with tte True, bias_tuning,
# vpt_shallow, vpt_deep, adapter, lora, adaptformer without). No script runs SSF on a ViT.
LIFT_SCRIPT_TTE = {"zeroshot": True, "lift": True, "bitfit": False, "vpt_shallow": False, "vpt_deep": False,
                   "adapter": False, "lora": False, "ssf": False}


# --------------------------------------------------------------------------- model selection


@pytest.mark.parametrize("recipe", config.RECIPES)
@pytest.mark.parametrize("dataset", LIFT_DATASETS)
def test_peft_methods_evaluate_their_final_weights(dataset, recipe):
    """LIFT's trainer tests the weights of its last epoch; no split ever selects them (not even the study's
    test-split selection on iNaturalist under recipe=paper)."""
    for method in PEFT:
        spec = config.resolve(dataset, "ViT-B-16", method, overrides={"recipe": recipe})
        assert spec["train.select"] == "final", (method, dataset, recipe)
    assert config.resolve("inat18", "ViT-B-16", "ce")["train.select"] == "test"  # the study's own rows keep it
    chosen = config.resolve(dataset, "ViT-B-16", "lift", overrides={"recipe": recipe, "train.select": "val"})
    assert chosen["train.select"] == "val"  # the user may still ask for selection


# --------------------------------------------------------------------------- schedule


@pytest.mark.parametrize("dataset", LIFT_DATASETS)
def test_lr_of_every_step_is_lifts_cosine_annealing_stepped_per_epoch(dataset):
    spec = config.resolve(dataset, "ViT-B-16", "lift")
    epochs, batches = {"imagenet-lt": (10, 906), "places-lt": (10, 489), "inat18": (20, 3419)}[dataset]
    assert (spec["train.iters"], spec["train.epochs"], spec["train.warmup_iters"]) == (epochs * batches, epochs, 0)
    factor = schedule(spec)
    expected = lift_lr_per_step(spec["train.lr"], epochs, batches)
    got = [spec["train.lr"] * factor(s) for s in range(spec["train.iters"])]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-15)
    last = [got[(e + 1) * batches - 1] for e in range(epochs)]  # the lr at the last step of each epoch
    assert last[-1] == pytest.approx(0.01 * 0.5 * (1 + np.cos(np.pi * (epochs - 1) / epochs)))


@pytest.mark.slow
def test_a_lift_run_records_final_selection_and_lifts_lr_at_every_step(store, random_tiny_clip):
    """Through the training loop: the logged lr (the one the next step uses) is LIFT's, epoch by epoch."""
    _, runs = store
    budget = ["train.iters=12", "train.epochs=4", "train.batch_size=16", "train.log_every=1", "train.threads=1"]
    spec = config.resolve("mnist-lt", "tiny-clip", "lift", pretrained=random_tiny_clip,
                          overrides=config.parse_sets(budget))
    run = prepare(spec, runs)
    status = train_run(run)
    assert status["selected_on"] == "final" and status["best_step"] is None
    assert not any(k.startswith(("val/", "test/")) for m in run.metrics() for k in m)  # no selection evaluations
    logged = {m["step"]: m["lr"] for m in run.metrics() if "lr" in m}
    expected = lift_lr_per_step(0.01, 4, 3)
    for step in range(1, 12):  # after `step` updates the optimizer holds the lr of the next step
        assert logged[step] == pytest.approx(expected[step], rel=1e-9), step


# --------------------------------------------------------------------------- preprocessing


def _image(width: int, height: int, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _lvmbench_transform(method: str, train: bool, recipe: str = "paper"):
    """The transform lvmbench's Trainer picks for ``method``'s run on ImageNet-LT with a 224-pixel CLIP."""
    spec = config.resolve("imagenet-lt", "ViT-B-16", method, overrides={"recipe": recipe})
    assert spec["data.decode"] == "pil"  # LIFT's loaders decode with PIL
    holder = SimpleNamespace(spec=spec, backbone=SimpleNamespace(image_size=224, mean=CLIP_MEAN, std=CLIP_STD),
                             hflip=True, dataset=SimpleNamespace(crop_scale=(0.08, 1.0)), decode=spec["data.decode"])
    return Trainer.transforms(holder, train)


@pytest.mark.parametrize("recipe", config.RECIPES)
@pytest.mark.parametrize("method", PEFT)
def test_peft_runs_read_images_as_lifts_trainer_prepares_them(method, recipe):
    for k, (w, h) in enumerate([(500, 375), (300, 451)]):
        image = _image(w, h, k)
        torch.testing.assert_close(_lvmbench_transform(method, False, recipe)(image),
                                   lift_transform(224, False)(image), rtol=0, atol=0)
        torch.manual_seed(k)
        ours = _lvmbench_transform(method, True, recipe)(image)
        torch.manual_seed(k)
        torch.testing.assert_close(ours, lift_transform(224, True)(image), rtol=0, atol=0)


# --------------------------------------------------------------------------- the paper-lift preset


def test_paper_lift_uses_tte_and_one_prompt_where_lifts_scripts_do():
    specs = expand(build_axes("paper-lift"))
    assert {s["method"] for s in specs} == set(LIFT_SCRIPT_TTE)
    for spec in specs:
        assert spec["eval.tte"] is LIFT_SCRIPT_TTE[spec["method"]], spec["method"]
        assert spec["eval.tte_expand"] == 24 and spec["eval.tte_mode"] == "fivecrop"  # configs: expand 24
    zeroshot = [s for s in specs if s["method"] == "zeroshot"]
    assert all(s["zeroshot.templates"] == "simple" and s["data.transform"] == "lift" for s in zeroshot)
    from lvmbench.models.prompts import templates_for

    assert templates_for(zeroshot[0]) == ["a photo of a {}."]  # trainer.py, build_model with zero_shot
    # The user's --set still wins over the preset's per-method settings.
    off = expand(build_axes("paper-lift", datasets=["places-lt"], sets={"eval.tte": False}))
    assert not any(s["eval.tte"] for s in off)


def test_paper_lift_dry_run_shows_tte_per_method(store):
    from lvmbench.cli import main

    _, runs = store
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["sweep", "--preset", "paper-lift", "--dataset", "imagenet-lt", "--dry-run",
                     "--runs-dir", str(runs)]) == 0
    rows = {line.split()[4]: line for line in out.getvalue().splitlines() if "imagenet-lt" in line}
    for method, tte in LIFT_SCRIPT_TTE.items():
        assert f"eval.tte={'on' if tte else 'off'}" in rows[method], rows[method]
