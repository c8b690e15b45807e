"""The study's decoder: a few timm ViT blocks over the frozen encoder's full token sequence.

Wang et al. 2023, "Exploring Vision-Language Models for Imbalanced Learning", Sec. 3: CLIP's image
tower stays frozen; ``depth`` timm ``Block``s (default 3, 4 heads, MLP ratio 0.5 as in the reference
code) read the class token and every patch token of its last block, and a classifier reads token 0 of the
last block as it is: the study's network (``imblearn/nets/clip/clip.py``) has no LayerNorm after its
decoder blocks. ``final_norm=True`` adds one (as timm's VisionTransformer has), for comparison.
"""
from __future__ import annotations

import torch
from torch import nn
from timm.models.vision_transformer import Block


class Decoder(nn.Module):
    """``depth`` transformer blocks (optionally a final LayerNorm); returns the class token's feature."""

    def __init__(self, width: int, depth: int = 3, heads: int = 4, mlp_ratio: float = 0.5, final_norm: bool = False,
                 init: str = "study"):
        super().__init__()
        if depth and width % heads:
            raise ValueError(f"decoder.heads={heads} must divide the backbone width {width}")
        self.blocks = nn.Sequential(*[Block(width, heads, mlp_ratio=mlp_ratio, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(width) if final_norm else nn.Identity()
        self.apply(INITS[init])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(tokens))[:, 0]


def study_init(m: nn.Module) -> None:
    """The study's init: its network is built by Hugging Face's ``from_pretrained``, which gives the
    modules missing from the CLIP checkpoint (decoder blocks, classifier) CLIP's ``_init_weights``:
    Linear biases zeroed, weights left at PyTorch's default, LayerNorms at 1 and 0."""
    if isinstance(m, nn.Linear) and m.bias is not None:
        nn.init.zeros_(m.bias)


def timm_init(m: nn.Module) -> None:
    """timm's ViT init: truncated normal (std 0.02) Linear weights, zero biases."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


INITS = {"study": study_init, "timm": timm_init}
