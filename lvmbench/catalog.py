"""Names the whole product shares (CLI, TUI, sweeps, SQL tables): datasets, backbones, methods.

This module never imports torch, so the terminal UI can use it. It is the dataset registry
(:func:`register_dataset`: each dataset's loader, named ``"module:function"``, and its defaults, in
one registration; it imports none of the loaders); the methods are those of the method registry
(:mod:`lvmbench.methods.registry`), re-exported here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .errors import unknown
from .methods import METHODS, MethodInfo, method  # noqa: F401 - the registry's table, torch-free

# kg CO2 per kWh: the default carbon intensity of runs.co2_kg and of the cost table (--carbon-intensity).
CARBON_KG_PER_KWH = 0.544


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset: its loader (``"module:function"``, imported when a run loads it; it takes the
    spec's data settings as keywords) and the settings it sets before ``--set`` (what a recipe decides
    for it is in ``lvmbench/recipes/<recipe>.toml``)."""

    name: str
    description: str
    loader: str | Callable
    defaults: Mapping[str, Any] = field(default_factory=dict)


DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(name: str, description: str, **facts: Any) -> DatasetInfo:
    """Register a dataset under ``name`` (once); ``facts`` are :class:`DatasetInfo`'s other fields."""
    if name in DATASETS:
        raise ValueError(f"dataset {name} is registered twice")
    DATASETS[name] = info = DatasetInfo(name, description, **facts)
    return info


def dataset(name: str) -> DatasetInfo:
    """Look a dataset up by name, with a suggestion when it is unknown."""
    if name not in DATASETS:
        raise unknown("dataset", name, DATASETS)
    return DATASETS[name]


_DATA = "lvmbench.data"
register_dataset("mnist-lt", "Embedded: 10,000 real MNIST digits, long-tailed train split (offline default)",
                 loader=f"{_DATA}.mnist_lt:load",
                 # The embedded default trains briefly so that a run takes seconds on a laptop CPU. The study
                 # defines transforms for its three datasets only: mnist-lt keeps tiny-clip's own preprocessing.
                 defaults={"train.iters": 300, "train.batch_size": 128, "train.warmup_iters": 30,
                           "train.eval_every": 100, "train.lr": 0.03, "data.transform": "open_clip",
                           "coop.n_ctx": 4,  # tiny-clip's text context holds 16 tokens: 16 context vectors leave no room
                           "eval.tte_expand": 3})  # LIFT's 24 px margin on 224 px images, scaled to tiny-clip's 28 px
register_dataset("imagenet-lt", "ImageNet-LT split files under --data-root (Liu et al. 2019)",
                 loader=f"{_DATA}.split_file:load_checked")
register_dataset("places-lt", "Places-LT split files under --data-root (Liu et al. 2019)",
                 loader=f"{_DATA}.split_file:load_checked")
register_dataset("inat18", "iNaturalist 2018 split files under --data-root", loader=f"{_DATA}.split_file:load_checked")
register_dataset("split-file", "Any dataset described by 'relative/path label' split files",
                 loader=f"{_DATA}.split_file:load_checked")
register_dataset("cifar10-lt", "CIFAR-10 (cifar-10-batches-py) with an exponential imbalance", loader=f"{_DATA}.cifar:load")
register_dataset("cifar100-lt", "CIFAR-100 (cifar-100-python) with an exponential imbalance", loader=f"{_DATA}.cifar:load")
register_dataset("folder", "An ImageFolder tree, optionally subsampled long-tailed", loader=f"{_DATA}.folder:load")

# Backbones the study uses; any other open_clip model name is accepted too.
BACKBONES: dict[str, str] = {
    "tiny-clip": "Embedded tiny CLIP trained on scikit-learn digits (offline default)",
    "ViT-B-16": "OpenAI CLIP ViT-B/16 (open_clip; --pretrained openai or laion2b_s34b_b88k)",
    "ViT-L-14": "OpenAI CLIP ViT-L/14 (open_clip; --pretrained openai or laion2b_s32b_b82k)",
    "RN101": "OpenAI CLIP ResNet-101 (open_clip; --pretrained openai)",
    "ViT-B-32": "CLIP ViT-B/32 (open_clip)",
}

DEFAULT_PRETRAINED = {"tiny-clip": "embedded"}
