"""Text-side prompts: zero-shot templates (Radford et al. 2021) and CoOp's learnable context (Zhou et al. 2022).

Both encode prompts in chunks of ``chunk`` classes, so that the text tower's activations never hold
more than one chunk at a time, whatever the number of classes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import text_global_pool
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import UserError

TEMPLATES: dict[str, list[str]] = {
    # The 80 prompts of CLIP's ImageNet evaluation (Radford et al. 2021), as open_clip ships them.
    "imagenet": [t("{}") for t in OPENAI_IMAGENET_TEMPLATES],
    "generic": ["a photo of a {}.", "a bad photo of a {}.", "a close-up photo of a {}.",
                "a photo of the {}.", "an image of a {}."],
    "simple": ["a photo of a {}."],
}
# zeroshot.templates=auto: CLIP's ImageNet prompts on ImageNet-LT, the generic set elsewhere.
AUTO = {"imagenet-lt": "imagenet"}
CTX_PLACEHOLDER = "X"


def templates_for(spec: dict) -> list[str]:
    choice = spec["zeroshot.templates"]
    return TEMPLATES[AUTO.get(spec["dataset"], "generic") if choice == "auto" else choice]


def text_tower(clip) -> nn.Module:
    """The module holding the text transformer (CLIP itself, or ``clip.text`` for custom-text models)."""
    return getattr(clip, "text", clip)


def encode_embedded(tower: nn.Module, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """open_clip's ``encode_text`` from the token embeddings on: lets CoOp substitute its context vectors."""
    cast = tower.transformer.get_cast_dtype()
    x = embeds.to(cast) + tower.positional_embedding.to(cast)
    x = tower.ln_final(tower.transformer(x, attn_mask=tower.attn_mask))
    x = text_global_pool(x, ids, tower.text_pool_type if hasattr(tower, "text_pool_type") else tower.pool_type,
                         eos_token_id=getattr(tower, "text_eos_id", getattr(tower, "eos_id", None)))
    proj = tower.text_projection
    if proj is None:
        return x
    return proj(x) if isinstance(proj, nn.Linear) else x @ proj


@torch.no_grad()
def class_embeddings(clip, tokenizer, names: list[str], templates: list[str], chunk: int = 256) -> torch.Tensor:
    """Zero-shot classifier [C, D]: per class, the normalised mean of its normalised template embeddings."""
    device = next(clip.parameters()).device
    prompts = [t.format(name) for name in names for t in templates]
    parts = [F.normalize(clip.encode_text(tokenizer(prompts[i:i + chunk]).to(device)).float(), dim=-1)
             for i in range(0, len(prompts), chunk)]
    per_template = torch.cat(parts).view(len(names), len(templates), -1)
    return F.normalize(per_template.mean(1), dim=-1)


class PromptLearner(nn.Module):
    """CoOp's unified context: ``n_ctx`` learned vectors before every class name, "[SOS] X..X name. [EOS]".

    ``forward()`` returns the normalised text embeddings of all classes [C, D]. The frozen text tower is
    held outside the module tree (checkpoints stay the size of the context). While gradients are
    enabled every chunk of ``chunk`` classes runs under activation checkpointing, so training keeps
    one chunk's activations plus a [C, D] output: memory stays bounded as C grows, gradients are exact.
    """

    def __init__(self, clip, tokenizer, names: list[str], n_ctx: int = 16, chunk: int = 256, backbone: str = ""):
        super().__init__()
        tower = text_tower(clip)
        if getattr(tower, "text_pool_type", getattr(tower, "pool_type", None)) != "argmax":
            raise UserError(f"coop needs a CLIP-style text tower (end-of-text pooling); {backbone} has none")
        self._tower = (tower,)  # a tuple keeps the frozen tower out of parameters() and state_dict()
        self.n_ctx, self.chunk = n_ctx, chunk
        check_prompt_length(tokenizer, names, n_ctx, backbone)
        prefix = " ".join([CTX_PLACEHOLDER] * n_ctx)
        ids = tokenizer([f"{prefix} {name}." for name in names])
        self.register_buffer("ids", ids, persistent=False)
        width = tower.token_embedding.weight.shape[1]
        self.ctx = nn.Parameter(torch.empty(n_ctx, width))
        nn.init.normal_(self.ctx, std=0.02)  # CoOp's random initialisation

    @property
    def tower(self) -> nn.Module:
        return self._tower[0]

    def _encode(self, ctx: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        emb = self.tower.token_embedding(ids)
        emb = torch.cat([emb[:, :1], ctx.to(emb.dtype).expand(len(ids), -1, -1), emb[:, 1 + self.n_ctx:]], dim=1)
        return encode_embedded(self.tower, emb, ids)

    def forward(self) -> torch.Tensor:
        outs = []
        for i in range(0, len(self.ids), self.chunk):
            ids = self.ids[i:i + self.chunk]
            if torch.is_grad_enabled():
                outs.append(checkpoint(self._encode, self.ctx, ids, use_reentrant=False))
            else:
                outs.append(self._encode(self.ctx, ids))
        return F.normalize(torch.cat(outs).float(), dim=-1)


def check_prompt_length(tokenizer, names: list[str], n_ctx: int, backbone: str) -> None:
    """Raise a UserError when "[SOS] X..X name. [EOS]" would be truncated for some class name."""
    ids = tokenizer([f"{name}." for name in names])  # [SOS] name. [EOS]
    lengths = (ids != 0).sum(1)
    longest = int(lengths.argmax())
    room = ids.shape[1] - int(lengths[longest])
    if n_ctx > room:
        hint = f"; --set coop.n_ctx={room}" if room else ""
        raise UserError(f"coop.n_ctx={n_ctx} does not fit the {ids.shape[1]}-token text context of "
                        f"{backbone or 'this backbone'}: class '{names[longest]}' leaves room for {room} "
                        f"context token(s){hint}")
