"""Names the whole product shares (CLI, TUI, sweeps, SQL tables): datasets, backbones, methods.

This module is pure data and never imports torch, so the terminal UI can use it.
"""
from __future__ import annotations

from dataclasses import dataclass

# kg CO2 per kWh: the default carbon intensity of runs.co2_kg and of the cost table (--carbon-intensity).
CARBON_KG_PER_KWH = 0.544


@dataclass(frozen=True)
class MethodInfo:
    """How a method trains: its kind, default loss, sampler and stage."""

    name: str
    kind: str  # zeroshot | decoder | stage2 | linear_probe | full_finetune | coop | peft
    description: str
    loss: str | None = None
    sampler: str = "instance"  # instance | balanced
    stage: int = 1


_M = MethodInfo
METHODS: dict[str, MethodInfo] = {m.name: m for m in [
    # Baselines of the study (rows above the imbalanced methods in its tables).
    _M("zeroshot", "zeroshot", "Zero-shot CLIP: cosine similarity to prompt-ensembled class-name embeddings (Radford et al. 2021)"),
    _M("linear_probe", "linear_probe", "Linear classifier on the frozen, pooled image embedding", loss="ce"),
    _M("full_finetune", "full_finetune", "Whole image tower fine-tuned with a linear head (AdamW)", loss="ce"),
    _M("coop", "coop", "CoOp prompt tuning: learnable context vectors, frozen towers (Zhou et al. 2022)", loss="ce"),
    # LIFT (Shi et al. 2024): a few parameters tuned inside the image tower, text-initialised cosine classifier,
    # logit-adjusted loss. ResNet towers take bitfit and ssf only.
    _M("lift", "peft", "LIFT: AdaptFormer bottlenecks parallel to each MLP of the image tower (Shi et al. 2024)", loss="logit_adjust"),
    _M("adapter", "peft", "LIFT with Adapters after each MLP of the image tower (Houlsby et al. 2019)", loss="logit_adjust"),
    _M("lora", "peft", "LIFT with LoRA on the image tower's query and value projections (Hu et al. 2022)", loss="logit_adjust"),
    _M("bitfit", "peft", "LIFT with the image tower's biases tuned, BitFit (Zaken et al. 2022)", loss="logit_adjust"),
    _M("ssf", "peft", "LIFT with SSF scale-and-shift after each operation of the image tower (Lian et al. 2022)", loss="logit_adjust"),
    _M("vpt_shallow", "peft", "LIFT with 10 visual prompt tokens before the first block, VPT-shallow (Jia et al. 2022)", loss="logit_adjust"),
    _M("vpt_deep", "peft", "LIFT with 10 visual prompt tokens before every block, VPT-deep (Jia et al. 2022)", loss="logit_adjust"),
    # Frozen CLIP + decoder trained with an imbalanced-learning loss (one stage).
    _M("ce", "decoder", "Decoder + cross-entropy", loss="ce"),
    _M("cbs", "decoder", "Decoder + cross-entropy with class-balanced sampling (the study's CE + CBS row)", loss="ce", sampler="balanced"),
    _M("cbw", "decoder", "Decoder + class-balanced re-weighting (Cui et al. 2019 with beta)", loss="cbw"),
    _M("focal", "decoder", "Decoder + focal loss (Lin et al. 2017)", loss="focal"),
    _M("ldam", "decoder", "Decoder + LDAM margins (Cao et al. 2019)", loss="ldam"),
    _M("balanced_softmax", "decoder", "Decoder + Balanced Softmax, CE(z + log prior) (Ren et al. 2020)", loss="balanced_softmax"),
    _M("lade", "decoder", "Decoder + LADE: balanced softmax + label-distribution regulariser (Hong et al. 2021)", loss="lade"),
    _M("grw", "decoder", "Decoder + generalised re-weighting, w ~ prior^-rho (Zhang et al. 2021)", loss="grw"),
    _M("logit_adjust", "decoder", "Decoder + logit adjustment, CE(z + tau log prior) (Menon et al. 2021)", loss="logit_adjust"),
    # Two-stage: start from a stage-1 `ce` run, backbone and decoder frozen.
    _M("crt", "stage2", "cRT: re-initialised classifier retrained with class-balanced sampling (Kang et al. 2020)", loss="ce", sampler="balanced", stage=2),
    _M("lws", "stage2", "LWS: one learned scale per class, class-balanced sampling (Kang et al. 2020)", loss="ce", sampler="balanced", stage=2),
    _M("disalign", "stage2", "DisAlign: adaptive calibration with a confidence gate, GRW loss (Zhang et al. 2021)", loss="grw", stage=2),
    _M("marc", "stage2", "MARC: per-class margin calibration a*z + b*|w|, GRW loss (Wang et al. 2022)", loss="grw", stage=2),
]}

DATASETS: dict[str, str] = {
    "mnist-lt": "Embedded: 10,000 real MNIST digits, long-tailed train split (offline default)",
    "imagenet-lt": "ImageNet-LT split files under --data-root (Liu et al. 2019)",
    "places-lt": "Places-LT split files under --data-root (Liu et al. 2019)",
    "inat18": "iNaturalist 2018 split files under --data-root",
    "split-file": "Any dataset described by 'relative/path label' split files",
    "cifar10-lt": "CIFAR-10 (cifar-10-batches-py) with an exponential imbalance",
    "cifar100-lt": "CIFAR-100 (cifar-100-python) with an exponential imbalance",
    "folder": "An ImageFolder tree, optionally subsampled long-tailed",
}

# Backbones the study uses; any other open_clip model name is accepted too.
BACKBONES: dict[str, str] = {
    "tiny-clip": "Embedded tiny CLIP trained on scikit-learn digits (offline default)",
    "ViT-B-16": "OpenAI CLIP ViT-B/16 (open_clip; --pretrained openai or laion2b_s34b_b88k)",
    "ViT-L-14": "OpenAI CLIP ViT-L/14 (open_clip; --pretrained openai or laion2b_s32b_b82k)",
    "RN101": "OpenAI CLIP ResNet-101 (open_clip; --pretrained openai)",
    "ViT-B-32": "CLIP ViT-B/32 (open_clip)",
}

DEFAULT_PRETRAINED = {"tiny-clip": "embedded"}


def method(name: str) -> MethodInfo:
    """Look a method up by name, with a suggestion when it is unknown."""
    from .errors import unknown

    if name not in METHODS:
        raise unknown("method", name, METHODS)
    return METHODS[name]
