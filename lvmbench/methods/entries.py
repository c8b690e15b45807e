"""Every method of the study (Wang et al. 2023) and of LIFT (Shi et al. 2024), one registration each.

Torch-free: a builder is named as ``"module:function"`` and imported only when a run is built, so the
terminal UI lists the same methods the training child builds. A registration's ``defaults`` are the
settings the method decides under every recipe; what a recipe decides for it is in
``lvmbench/recipes/<recipe>.toml``.
"""
from __future__ import annotations

from .registry import register_method

_PKG = "lvmbench.methods"

# The baselines are not in the study's code: they read images as CLIP's own preprocessing prepares them.
OPEN_CLIP_INPUTS = {"data.transform": "open_clip"}

# Baselines of the study (rows above the imbalanced methods in its tables).
register_method("zeroshot", "zeroshot", "Zero-shot CLIP: cosine similarity to prompt-ensembled class-name embeddings",
                builder=f"{_PKG}.baselines:zeroshot", defaults=OPEN_CLIP_INPUTS, reference="Radford et al. 2021")
register_method("linear_probe", "linear_probe", "Linear classifier on the frozen, pooled image embedding",
                builder=f"{_PKG}.baselines:linear_probe", loss="ce", defaults=OPEN_CLIP_INPUTS)
register_method("full_finetune", "full_finetune", "Whole image tower fine-tuned with a linear head (AdamW)",
                builder=f"{_PKG}.baselines:full_finetune", loss="ce",
                defaults={"train.optimizer": "adamw", "train.lr": 3e-5, "train.batch_size": 128,
                          "train.weight_decay": 0.1, **OPEN_CLIP_INPUTS},
                # The embedded default trains 300 steps: AdamW at 3e-5 barely moves tiny-clip's tower in that
                # time (22 % test accuracy), 3e-4 fine-tunes it.
                dataset_defaults={"mnist-lt": {"train.lr": 3e-4}})
register_method("coop", "coop", "CoOp prompt tuning: learnable context vectors, frozen towers",
                builder=f"{_PKG}.baselines:coop", loss="ce", defaults={"train.lr": 0.002, **OPEN_CLIP_INPUTS},
                reference="Zhou et al. 2022")

# LIFT (Shi et al. 2024): a few parameters tuned inside the image tower, text-initialised cosine classifier,
# logit-adjusted loss. ResNet towers take bitfit and ssf only. LIFT's configs (shijxcs/LIFT utils/config.py,
# configs/model/clip_vit_b16.yaml, trainer.py): SGD lr 0.01, momentum 0.9, weight decay 5e-4 on every tuned
# parameter, batch 128, CosineAnnealingLR(T_max=epochs) stepped once per epoch with no warm-up, cosine classifier
# with scale 25 started from "a photo of a {}." text features, logit-adjusted loss with tau 1, LIFT's
# preprocessing on PIL images, the final weights tested (no split selects them); 10 epochs (20 on iNaturalist
# 2018) of batch 128 over each training split (ImageNet-LT 115,846 images, Places-LT 62,500, iNaturalist 2018
# 437,513).
LIFT_DEFAULTS = {
    "train.optimizer": "sgd", "train.lr": 0.01, "train.momentum": 0.9, "train.nesterov": False,
    "train.weight_decay": 5e-4, "train.decay_params": "all", "train.batch_size": 128, "train.warmup_iters": 0,
    "train.schedule": "lift", "train.epochs": 10, "train.select": "final", "head.kind": "cosine",
    "head.scale": 25.0, "head.init": "text", "zeroshot.templates": "simple", "data.transform": "lift",
    "data.decode": "pil",
}
LIFT_EPOCHS = {"imagenet-lt": (10, 906), "places-lt": (10, 489), "inat18": (20, 3419)}  # (epochs, steps each)
for _name, _description, _reference in [
    ("lift", "LIFT: AdaptFormer bottlenecks parallel to each MLP of the image tower", "Shi et al. 2024"),
    ("adapter", "LIFT with Adapters after each MLP of the image tower", "Houlsby et al. 2019"),
    ("lora", "LIFT with LoRA on the image tower's query and value projections", "Hu et al. 2022"),
    ("bitfit", "LIFT with the image tower's biases tuned, BitFit", "Zaken et al. 2022"),
    ("ssf", "LIFT with SSF scale-and-shift after each operation of the image tower", "Lian et al. 2022"),
    ("vpt_shallow", "LIFT with 10 visual prompt tokens before the first block, VPT-shallow", "Jia et al. 2022"),
    ("vpt_deep", "LIFT with 10 visual prompt tokens before every block, VPT-deep", "Jia et al. 2022"),
]:
    register_method(_name, "peft", _description, builder=f"{_PKG}.lift:peft_task", loss="logit_adjust",
                    defaults=LIFT_DEFAULTS, reference=_reference,
                    dataset_defaults={d: {"train.iters": epochs * steps, "train.epochs": epochs}
                                      for d, (epochs, steps) in LIFT_EPOCHS.items()})

# Frozen CLIP + decoder trained with an imbalanced-learning loss (one stage).
for _name, _description, _loss, _reference in [
    ("ce", "Decoder + cross-entropy", "ce", ""),
    ("cbs", "Decoder + cross-entropy with class-balanced sampling (the study's CE + CBS row)", "ce", ""),
    ("cbw", "Decoder + class-balanced re-weighting", "cbw", "Cui et al. 2019 with beta"),
    ("focal", "Decoder + focal loss", "focal", "Lin et al. 2017"),
    ("ldam", "Decoder + LDAM margins", "ldam", "Cao et al. 2019"),
    ("balanced_softmax", "Decoder + Balanced Softmax, CE(z + log prior)", "balanced_softmax", "Ren et al. 2020"),
    ("lade", "Decoder + LADE: balanced softmax + label-distribution regulariser", "lade", "Hong et al. 2021"),
    ("grw", "Decoder + generalised re-weighting, w ~ prior^-rho", "grw", "Zhang et al. 2021"),
    ("logit_adjust", "Decoder + logit adjustment, CE(z + tau log prior)", "logit_adjust", "Menon et al. 2021"),
]:
    register_method(_name, "decoder", _description, builder=f"{_PKG}.decoder:decoder_task", loss=_loss,
                    sampler="balanced" if _name == "cbs" else "instance", reference=_reference)

# Two-stage: start from a stage-1 `ce` run, backbone and decoder frozen.
for _name, _description, _loss, _sampler, _reference in [
    ("crt", "cRT: re-initialised classifier retrained with class-balanced sampling", "ce", "balanced",
     "Kang et al. 2020"),
    ("lws", "LWS: one learned scale per class, class-balanced sampling", "ce", "balanced", "Kang et al. 2020"),
    ("disalign", "DisAlign: adaptive calibration with a confidence gate, GRW loss", "grw", "instance",
     "Zhang et al. 2021"),
    ("marc", "MARC: per-class margin calibration a*z + b*|w|, GRW loss", "grw", "instance", "Wang et al. 2022"),
]:
    register_method(_name, "stage2", _description, builder=f"{_PKG}.stage2:{_name}", loss=_loss, sampler=_sampler,
                    stage=2, reference=_reference)
