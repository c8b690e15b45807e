"""Named grids that reproduce the experiments of Wang et al. 2023, "Exploring Vision-Language
Models for Imbalanced Learning" (Tables 1–6), LIFT's main settings (Shi et al. 2024), plus the small
embedded grid. Torch-free.

Each preset fills the sweep's axes; any axis given on the command line replaces the preset's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import catalog
from ..errors import unknown

# Every method of the study's main tables: the baselines, the decoder with each imbalanced loss,
# and the two-stage methods (which share one stage-1 ``ce`` run per seed).
PAPER_METHODS = tuple(m.name for m in catalog.METHODS.values() if m.kind != "peft")
# LIFT's rows (shijxcs/LIFT scripts/run_tab1to4_main_results.sh, run_tab6_peft_methods.sh): zero-shot and
# each parameter-efficient method.
LIFT_METHODS = ("zeroshot", *(m.name for m in catalog.METHODS.values() if m.kind == "peft"))
# Test-time ensembling where LIFT's scripts use it: its zero-shot row (zsclip_vit_b16, "a photo of a {}.", LIFT's
# evaluation transform) and its main LIFT rows (adaptformer, tab1to4); Table 6 evaluates bias_tuning, vpt_shallow,
# vpt_deep, adapter, lora and adaptformer without it, and no script runs SSF on a ViT.
LIFT_METHOD_SETS = {"zeroshot": {"eval.tte": True, "zeroshot.templates": "simple", "data.transform": "lift"},
                    "lift": {"eval.tte": True}}
EMBEDDED_METHODS = ("zeroshot", "ce", "balanced_softmax", "lade", "disalign", "marc")  # the README's results table
# ``lvmbench demo --full`` adds LIFT (Shi et al. 2024): tuning inside the tower costs minutes more on a CPU.
EMBEDDED_FULL_METHODS = EMBEDDED_METHODS + ("lift",)


# The study averages three runs of every cell (Imbalance-VLM scripts/cal_eval.py sums each algorithm's
# eval.py results over its runs and divides by 3); LIFT's scripts run one (configs: seed 0).
STUDY_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Preset:
    description: str
    datasets: tuple[str, ...]
    backbones: tuple[str, ...]
    methods: tuple[str, ...] = PAPER_METHODS
    pretrained: tuple[str | None, ...] = (None,)
    seeds: tuple[int, ...] = STUDY_SEEDS
    sets: dict = field(default_factory=dict)
    method_sets: dict = field(default_factory=dict)  # method -> settings of its runs only


PRESETS: dict[str, Preset] = {
    "paper-table1": Preset("Table 1: ImageNet-LT, CLIP ViT-L/14 (OpenAI), every method",
                           ("imagenet-lt",), ("ViT-L-14",)),
    "paper-table2": Preset("Table 2: iNaturalist 2018, CLIP ViT-L/14 (OpenAI), every method",
                           ("inat18",), ("ViT-L-14",)),
    "paper-table3": Preset("Table 3: Places-LT, CLIP ViT-L/14 (OpenAI), every method",
                           ("places-lt",), ("ViT-L-14",)),
    "paper-backbones": Preset("Table 4: ViT-B/16 vs ViT-L/14 (OpenAI) on ImageNet-LT", ("imagenet-lt",),
                              ("ViT-B-16", "ViT-L-14")),
    "paper-laion": Preset("Table 5: ViT-L/14 with OpenAI vs LAION-2B weights on iNaturalist 2018 and Places-LT",
                          ("inat18", "places-lt"), ("ViT-L-14",), pretrained=("openai", "laion2b_s32b_b82k")),
    "paper-resnet": Preset("Table 6: CLIP ResNet-101 (OpenAI) on ImageNet-LT", ("imagenet-lt",), ("RN101",)),
    "paper-lift": Preset("LIFT (Shi et al. 2024): zero-shot and each PEFT method, CLIP ViT-B/16 (OpenAI), "
                         "ImageNet-LT, Places-LT, iNaturalist 2018; eval.tte=true for zeroshot and lift, as LIFT's "
                         "scripts", ("imagenet-lt", "places-lt", "inat18"), ("ViT-B-16",), methods=LIFT_METHODS,
                         seeds=(0,), method_sets=LIFT_METHOD_SETS),
    "embedded": Preset("The embedded default: tiny-clip on mnist-lt, 6 methods (offline, minutes on a CPU)",
                       ("mnist-lt",), ("tiny-clip",), methods=EMBEDDED_METHODS, seeds=(0,)),
}


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise unknown("preset", name, PRESETS)
    return PRESETS[name]
