"""Classifiers started from the class names' text: the zero-shot weights and the head initialisation
(``head.init=text``) that reproduces zero-shot logits (zero-shot initialisation as in Wortsman et al.
2022, WiSE-FT). Used by the decoder methods, the baselines and LIFT."""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import config
from ..errors import UserError
from ..models import prompts
from ..models.heads import set_head_weights

TEXT_CHUNK = 256  # prompts per text-tower call when no gradient flows


def logit_scale(backbone) -> float:
    return float(backbone.clip.logit_scale.exp())


def zero_shot_weights(spec: dict, backbone, dataset) -> torch.Tensor:
    """The zero-shot classifier [C, D]: prompt-ensembled, normalised class-name embeddings."""
    names = dataset.require_class_names(config.class_names_needed(spec))
    return prompts.class_embeddings(backbone.clip, backbone.tokenizer(), names, prompts.templates_for(spec),
                                    TEXT_CHUNK)


def projection(backbone) -> torch.Tensor:
    """The image tower's final projection as a [width, embed_dim] matrix (features @ P = embedding)."""
    visual = backbone.clip.visual
    if not backbone.is_vit:
        return visual.attnpool.c_proj.weight.detach().t()
    if visual.proj is not None:
        return visual.proj.detach()
    if backbone.width != backbone.embed_dim:
        raise UserError(f"{backbone.name} has no linear image projection to map text embeddings through")
    return torch.eye(backbone.width, device=next(visual.parameters()).device)


def init_head_from_text(head: nn.Module, spec: dict, backbone, dataset, through_projection: bool) -> None:
    """Start ``head`` from the zero-shot class embeddings (``head.init=text``).

    On the embedding (rescaled to norm sqrt(D)) a linear head gets ``logit_scale / sqrt(D) * T``: its
    logits are the zero-shot logits. A head on ``width``-dim features before the projection P (the decoder's) gets ``T P^T``,
    so that its logit for class c is ``<f P, t_c>``: the zero-shot score of f read as an image feature.
    """
    weight = zero_shot_weights(spec, backbone, dataset)
    if through_projection:
        weight = weight @ projection(backbone).float().t()
    elif isinstance(head, nn.Linear):
        weight = logit_scale(backbone) / math.sqrt(weight.shape[1]) * weight
    set_head_weights(head, weight)
