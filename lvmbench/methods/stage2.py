"""Stage-2 logit adjusters trained on top of a frozen stage-1 model.

Each adjuster is an ``nn.Module`` with ``forward(features, logits)`` where
``features`` [B, D] is the input of the stage-1 linear classifier and
``logits`` [B, C] its output; it returns adjusted logits [B, C] in float32.

Shapes follow the study's code (``imblearn/algorithms/supervised/utils.py``) and the authors': LWS's
scales are a vector [C]; DisAlign's and MARC's scale and bias are [1, C] matrices, so the study's
optimizer (weight decay on tensors of 2 or more dimensions) decays them and not LWS's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import UserError
from ..models.classifier import DecoderClassifier, Stage2Classifier
from ..runs.rundir import RunDir
from .task import Build, Task

__all__ = ["LWS", "DisAlign", "MARC", "count_trainable"]


class LWS(nn.Module):
    """Learnable weight scaling: z'_c = s_c * z_c, s initialised to 1.

    Kang et al., "Decoupling Representation and Classifier for Long-Tailed
    Recognition", ICLR 2020. Trainable parameters: C.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(num_classes))

    def forward(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return self.scale * logits.float()


class DisAlign(nn.Module):
    """Distribution alignment: z'_c = (1 + sigma * s_c) * z_c + sigma * b_c.

    Zhang et al., "Distribution Alignment: A Unified Framework for Long-tail
    Visual Recognition", CVPR 2021. sigma = sigmoid(Linear(feat_dim, 1)(x)) is
    an input-dependent confidence; s starts at 1 and b at 0, so at
    initialisation z' = (1 + sigma) * z. Trainable parameters: 2C + D + 1.

    ``confidence_init="torch"`` keeps PyTorch's default init of the confidence
    layer (the study's ``DisAlign_Net``); ``"authors"`` sets its weight to 0.1,
    as the authors' ``DisAlignLinear`` does.
    """

    def __init__(self, num_classes: int, feat_dim: int, confidence_init: str = "torch"):
        super().__init__()
        self.confidence = nn.Linear(feat_dim, 1)
        if confidence_init == "authors":
            nn.init.constant_(self.confidence.weight, 0.1)
        elif confidence_init != "torch":
            raise ValueError(f"confidence_init must be torch or authors, got {confidence_init!r}")
        self.scale = nn.Parameter(torch.ones(1, num_classes))
        self.bias = nn.Parameter(torch.zeros(1, num_classes))

    def forward(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        sigma = torch.sigmoid(self.confidence(features.float()))  # [B, 1]
        return (1.0 + sigma * self.scale) * logits.float() + sigma * self.bias


class MARC(nn.Module):
    """Margin calibration: z'_c = a_c * z_c + b_c * ||w_c||, a init 1, b init 0.

    Wang et al., "Margin Calibration for Long-Tailed Visual Recognition",
    ACML 2022. ||w_c|| is the L2 norm of row c of the stage-1 classifier
    weight, computed once and kept as a (non-trainable) buffer.
    Trainable parameters: 2C.

    ``eval_norm="fresh"`` (``marc.eval_norm``, the study's final evaluation): after training,
    :meth:`final_evaluation` swaps ||w_c|| for the row norms of a freshly initialised classifier, as
    the study's ``eval.py`` computes them (its ``MARC_Net`` reads the norms of the net it has just built,
    before ``load_state_dict``); ``seed`` draws that classifier.
    """

    def __init__(self, classifier_weight: torch.Tensor, eval_norm: str = "stage1", seed: int = 0):
        super().__init__()
        if isinstance(classifier_weight, nn.Linear):
            classifier_weight = classifier_weight.weight
        weight = torch.as_tensor(classifier_weight).detach().float()
        if weight.dim() != 2:
            raise ValueError(f"classifier_weight must be [C, D], got {tuple(weight.shape)}")
        num_classes = weight.size(0)
        self.register_buffer("weight_norm", weight.norm(dim=1).clone())
        self.a = nn.Parameter(torch.ones(1, num_classes))
        self.b = nn.Parameter(torch.zeros(1, num_classes))
        self.eval_norm, self.seed, self.width = eval_norm, seed, weight.size(1)

    def final_evaluation(self) -> None:
        """The norms the final evaluation reads (``marc.eval_norm``); the training's stay in the checkpoint."""
        if self.eval_norm == "fresh":
            self.weight_norm = fresh_row_norms(len(self.weight_norm), self.width, self.seed).to(self.weight_norm.device)

    def forward(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return self.a * logits.float() + self.b * self.weight_norm


def fresh_row_norms(num_classes: int, width: int, seed: int) -> torch.Tensor:
    """The row norms of a new ``nn.Linear(width, num_classes)`` under PyTorch's default init (Kaiming uniform
    with a = sqrt(5): U(-1/sqrt(width), 1/sqrt(width))), drawn from a generator seeded with ``seed``."""
    bound = 1.0 / math.sqrt(width)
    generator = torch.Generator().manual_seed(seed)
    return torch.empty(num_classes, width).uniform_(-bound, bound, generator=generator).norm(dim=1)


def count_trainable(module: nn.Module) -> int:
    """Number of scalar parameters of ``module`` with ``requires_grad``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# -- the stage-2 methods' builders (registered in ``lvmbench.methods.entries``) ------------------

def load_stage1(spec: dict, run_path: Path, width: int, num_classes: int) -> DecoderClassifier:
    """The stage-1 model of a two-stage run, from its run directory's checkpoint."""
    stage1_id = spec["stage1.run_id"]
    if not stage1_id:
        raise UserError(f"method {spec['method']} needs a stage-1 run: --set stage1.run_id=RUN_ID")
    stage1 = RunDir(run_path.parent / stage1_id)
    path = stage1.model_file
    if not path.exists():
        raise UserError(f"stage-1 run {stage1_id} has no model checkpoint ({path})")
    model = DecoderClassifier.from_spec(stage1.spec(), width, num_classes)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


def crt_reinit(spec: dict, is_vit: bool) -> bool:
    """Whether cRT starts from a fresh classifier: ``crt.reinit=by_backbone`` is the study's rule
    (``Crt_Net`` re-initialises the classifier of its ResNet nets, not of its ViT nets)."""
    return {"always": True, "never": False, "by_backbone": not is_vit}[spec.get("crt.reinit", "always")]


def stage2_task(b: Build, adjuster: Callable[[DecoderClassifier], nn.Module] | None = None,
                reinit_head: bool = False) -> Task:
    """A stage-2 task on the frozen stage-1 model of ``b``'s parent run: ``adjuster(stage1)`` trains on
    its logits, or (none) its classifier trains again, re-initialised when ``reinit_head``."""
    stage1 = load_stage1(b.spec, b.run_path, b.backbone.width, b.dataset.num_classes)
    return Task(Stage2Classifier(stage1, adjuster(stage1) if adjuster else None, reinit_head), "tokens", b.loss,
                b.info.sampler)


def crt(b: Build) -> Task:
    """cRT (Kang et al., ICLR 2020): the classifier trains again on the frozen stage-1 features,
    re-initialised as ``crt.reinit`` says (see :func:`crt_reinit`)."""
    return stage2_task(b, None, crt_reinit(b.spec, b.backbone.is_vit))


def lws(b: Build) -> Task:
    return stage2_task(b, lambda stage1: LWS(stage1.head.weight.shape[0]))


def disalign(b: Build) -> Task:
    confidence_init = b.spec.get("disalign.confidence_init", "torch")
    return stage2_task(b, lambda stage1: DisAlign(*stage1.head.weight.shape, confidence_init))


def marc(b: Build) -> Task:
    eval_norm = b.spec.get("marc.eval_norm", "stage1")  # a run made before the setting: the stage-1 norms
    return stage2_task(b, lambda stage1: MARC(stage1.head.weight.detach(), eval_norm, b.spec["seed"]))
