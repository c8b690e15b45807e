"""Parameter-efficient fine-tuning inside a CLIP image tower, as LIFT defines it.

Shi et al., "Long-Tail Learning with Foundation Model: Heavy Fine-Tuning Hurts", ICML 2024
(code: shijxcs/LIFT, ``models/peft_modules.py`` and ``models/peft_vit.py``). The tower's own
weights stay frozen; each method adds (or unfreezes) a few parameters:

========== ==================================================================== ==================
method     where (every block of an open_clip ViT unless said)                   init
========== ==================================================================== ==================
lift       AdaptFormer (Chen et al. 2022): LN -> down -> ReLU -> up -> * s,      up = 0: identity
           read from the block's residual input, added parallel to the MLP
adapter    Adapter (Houlsby et al. 2019): same bottleneck (no scale), applied    up = 0: identity
           sequentially to the MLP's output, ``h + adapter(h)``
lora       LoRA (Hu et al. 2022) on the query and value projections,             B = 0: identity
           ``q += x A B / r``
bitfit     BitFit (Zaken et al. 2022): every bias inside the blocks (LayerNorm,   the tower's own
           attention, MLP)
ssf        SSF (Lian et al. 2022): ``x * scale + shift`` after both LayerNorms,   scale ~ N(1, .02),
           the qkv and output projections and both MLP layers (LIFT's            shift ~ N(0, .02):
           ``ssf_attn + ssf_mlp + ssf_ln``)                                       near, not at, identity
vpt_shallow VPT (Jia et al. 2022): ``vpt_len`` learned tokens appended before   U(+-sqrt(6/(3 p^2 + D))):
           the first block                                                       changes the output
vpt_deep   VPT: before every block, replacing the previous block's prompts     as vpt_shallow
========== ==================================================================== ==================

The bottleneck (adapter, AdaptFormer) and rank (LoRA) default to LIFT's rule
``2 ** max(0, int(log2(C / (2 L))))`` for C classes and L blocks (32 for ImageNet-LT on ViT-B/16);
prompts are 10 tokens long. The tuned tower returns LIFT's feature: the class token after
``ln_post``, before CLIP's projection (so its classifier reads ``width``-dim features).

ResNet towers: LIFT tunes only their biases (``bitfit``) or one SSF on the pooled embedding
(``ssf``); the other methods need transformer blocks and are refused.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

METHODS = ("lift", "adapter", "lora", "bitfit", "ssf", "vpt_shallow", "vpt_deep")
RESNET_METHODS = ("bitfit", "ssf")
VPT_LEN = 10


def lift_bottleneck(num_classes: int, num_layers: int) -> int:
    """LIFT's default adapter width / LoRA rank (``peft_vit.py``): 2 ** max(0, int(log2(C / 2L)))."""
    return 2 ** max(0, int(math.log2(num_classes / (num_layers * 2))))


class Bottleneck(nn.Module):
    """LN -> down -> ReLU -> up (-> * learnable scale): LIFT's ``Adapter`` and ``AdaptFormer``.

    down: Kaiming normal (a = sqrt 5), up: zeros, biases zero, so the module starts as 0."""

    def __init__(self, dim: int, bottleneck: int, scaled: bool):
        super().__init__()
        self.ln = nn.LayerNorm(dim)
        self.down_proj = nn.Linear(dim, bottleneck)
        self.up_proj = nn.Linear(bottleneck, dim)
        self.scale = nn.Parameter(torch.ones(1)) if scaled else None
        nn.init.kaiming_normal_(self.down_proj.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down_proj.bias)
        nn.init.zeros_(self.up_proj.weight)
        nn.init.zeros_(self.up_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up_proj(F.relu(self.down_proj(self.ln(x))))
        return x * self.scale if self.scale is not None else x


class LoRA(nn.Module):
    """``x A B / r``; A: Kaiming uniform (a = sqrt 5), B: zeros (LIFT's ``LoRA``)."""

    def __init__(self, dim: int, rank: int):
        super().__init__()
        self.lora_A = nn.Parameter(torch.zeros(dim, rank))
        self.lora_B = nn.Parameter(torch.zeros(rank, dim))
        self.scaling = 1.0 / rank
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scaling * (x @ self.lora_A @ self.lora_B)


class SSF(nn.Module):
    """Scale and shift of the last dimension (or the channels of an NCHW map)."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.empty(dim).normal_(mean=1.0, std=0.02))
        self.shift = nn.Parameter(torch.empty(dim).normal_(std=0.02))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return x * self.scale.view(1, -1, 1, 1) + self.shift.view(1, -1, 1, 1)
        return x * self.scale + self.shift


class VPT(nn.Module):
    """Learned prompt tokens appended after the first ``seq_len`` tokens (dropping earlier prompts)."""

    def __init__(self, length: int, seq_len: int, patch_size: tuple[int, int], dim: int):
        super().__init__()
        self.seq_len = seq_len
        bound = math.sqrt(6.0 / float(3 * patch_size[0] * patch_size[1] + dim))
        self.prompt = nn.Parameter(torch.empty(length, dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :self.seq_len]
        return torch.cat([x, self.prompt.to(x.dtype).expand(x.shape[0], -1, -1)], dim=1)


def _block_modules(method: str, dim: int, mlp_dim: int, bottleneck: int) -> nn.ModuleDict:
    """The modules one transformer block gets under ``method`` (empty for bitfit and VPT)."""
    if method == "lift":
        return nn.ModuleDict({"adaptformer": Bottleneck(dim, bottleneck, scaled=True)})
    if method == "adapter":
        return nn.ModuleDict({"adapter": Bottleneck(dim, bottleneck, scaled=False)})
    if method == "lora":
        return nn.ModuleDict({"lora_q": LoRA(dim, bottleneck), "lora_v": LoRA(dim, bottleneck)})
    if method == "ssf":
        return nn.ModuleDict({"ssf_ln_1": SSF(dim), "ssf_attn_in": SSF(3 * dim), "ssf_attn_out": SSF(dim),
                              "ssf_ln_2": SSF(dim), "ssf_mlp_in": SSF(mlp_dim), "ssf_mlp_out": SSF(dim)})
    return nn.ModuleDict()


def _apply(mods: nn.ModuleDict, name: str, x: torch.Tensor) -> torch.Tensor:
    return mods[name](x) if name in mods else x


def block_forward(block: nn.Module, x: torch.Tensor, mods: nn.ModuleDict) -> torch.Tensor:
    """One open_clip ``ResidualAttentionBlock`` (batch first) with the PEFT modules ``mods`` inserted
    where LIFT's ``Peft_ViT.forward`` inserts them; with no modules it computes the block itself."""
    attn = block.attn
    h = _apply(mods, "ssf_ln_1", block.ln_1(x))
    q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    if "lora_q" in mods:
        q, v = q + mods["lora_q"](h), v + mods["lora_v"](h)
    if "ssf_attn_in" in mods:
        q, k, v = mods["ssf_attn_in"](torch.cat([q, k, v], dim=-1)).chunk(3, dim=-1)
    n, length, dim = h.shape
    heads = attn.num_heads
    q, k, v = (t.reshape(n, length, heads, dim // heads).transpose(1, 2) for t in (q, k, v))
    o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, length, dim)
    o = _apply(mods, "ssf_attn_out", F.linear(o, attn.out_proj.weight, attn.out_proj.bias))
    x = x + block.ls_1(o)
    mlp = block.mlp
    h = _apply(mods, "ssf_ln_2", block.ln_2(x))
    h = mlp.gelu(_apply(mods, "ssf_mlp_in", mlp.c_fc(h)))
    h = _apply(mods, "ssf_mlp_out", mlp.c_proj(h))
    if "adapter" in mods:
        h = h + mods["adapter"](h)
    out = x + block.ls_2(h)
    if "adaptformer" in mods:
        out = out + mods["adaptformer"](x)
    return out


def _check_vit(visual: nn.Module, name: str) -> None:
    blocks = visual.transformer.resblocks
    ok = (getattr(visual, "attn_pool", None) is None and getattr(visual.transformer, "batch_first", True)
          and all(isinstance(getattr(b, "attn", None), nn.MultiheadAttention) and not hasattr(b, "ln_1_kv")
                  and hasattr(getattr(b, "mlp", None), "c_fc") for b in blocks))
    if not ok:
        raise UserError(f"parameter-efficient tuning needs CLIP-style transformer blocks; {name} has others")


class PeftViT(nn.Module):
    """A frozen open_clip ViT image tower with LIFT's PEFT ``method``: ``images -> [N, width]`` features.

    ``tuner`` holds every added parameter; bitfit unfreezes the blocks' biases instead.
    """

    def __init__(self, visual: nn.Module, method: str, num_classes: int, bottleneck: int | None = None,
                 vpt_len: int = VPT_LEN, name: str = "this backbone"):
        super().__init__()
        _check_vit(visual, name)
        self.visual = visual.requires_grad_(False)
        self.method = method
        blocks = visual.transformer.resblocks
        layers, dim = len(blocks), visual.transformer.width
        mlp_dim = blocks[0].mlp.c_fc.out_features
        self.bottleneck = bottleneck or lift_bottleneck(num_classes, layers)
        self.tuner = nn.ModuleList([_block_modules(method, dim, mlp_dim, self.bottleneck) for _ in range(layers)])
        seq_len = visual.positional_embedding.shape[0]
        patch = tuple(visual.conv1.kernel_size)
        n_prompts = {"vpt_shallow": 1, "vpt_deep": layers}.get(method, 0)
        self.prompts = nn.ModuleList([VPT(vpt_len, seq_len, patch, dim) for _ in range(n_prompts)])
        if method == "bitfit":
            for pname, p in blocks.named_parameters():
                if pname.endswith("bias"):
                    p.requires_grad_(True)
        self.width = dim

    def train(self, mode: bool = True):
        super().train(mode)
        self.visual.eval()  # the frozen tower has no dropout or norm statistics to update
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        visual = self.visual
        x = visual._embeds(images)
        for i, block in enumerate(visual.transformer.resblocks):
            if i < len(self.prompts):
                x = self.prompts[i](x)
            x = block_forward(block, x, self.tuner[i])
        pooled, _ = visual._pool(x)
        return pooled


class PeftResNet(nn.Module):
    """A frozen open_clip ModifiedResNet with LIFT's ``bitfit`` (every bias of the tower) or ``ssf``
    (one SSF on the pooled, projected embedding, LIFT's ``RN_Tuner.ssf_attn``): ``images -> [N, embed_dim]``."""

    def __init__(self, visual: nn.Module, method: str):
        super().__init__()
        self.visual = visual.requires_grad_(False)
        self.method = method
        self.ssf = SSF(visual.attnpool.c_proj.out_features) if method == "ssf" else None
        if method == "bitfit":
            for pname, p in visual.named_parameters():
                if pname.endswith("bias"):
                    p.requires_grad_(True)
        self.width = visual.attnpool.c_proj.out_features

    def train(self, mode: bool = True):
        super().train(mode)
        self.visual.eval()  # BatchNorm statistics stay those of the checkpoint, as in LIFT's frozen tower
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.visual(images)
        return self.ssf(x) if self.ssf is not None else x


def peft_tower(visual: nn.Module, method: str, num_classes: int, *, is_vit: bool, name: str = "this backbone",
               bottleneck: int | None = None, vpt_len: int = VPT_LEN) -> nn.Module:
    """The image tower with ``method`` inserted; a one-line error for what LIFT does not define."""
    if method not in METHODS:
        raise UserError(f"unknown parameter-efficient method '{method}' (one of {', '.join(METHODS)})")
    if is_vit:
        return PeftViT(visual, method, num_classes, bottleneck, vpt_len, name)
    if method not in RESNET_METHODS:
        raise UserError(f"{method} needs a transformer image tower; for {name} use one of "
                        f"{', '.join(RESNET_METHODS)}")
    return PeftResNet(visual, method)
