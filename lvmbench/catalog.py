"""Names the whole product shares (CLI, TUI, sweeps, SQL tables): datasets, backbones, methods.

This module is pure data and never imports torch, so the terminal UI can use it. The methods are
those of the method registry (:mod:`lvmbench.methods.registry`), re-exported here.
"""
from __future__ import annotations

from .methods import METHODS, MethodInfo, method  # noqa: F401 - the registry's table, torch-free

# kg CO2 per kWh: the default carbon intensity of runs.co2_kg and of the cost table (--carbon-intensity).
CARBON_KG_PER_KWH = 0.544


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
