"""How the frozen image tower runs, and in which precision the trainable model runs.

Encoder (``encoder.precision``): on a GPU, bf16 autocast; on a CPU with native bf16 instructions
(AVX512-BF16 or AMX), the tower's weights are cast to bf16 once, which runs a ViT-B/16 forward
about 2x faster than fp32 (see BENCHMARKS.md; CPU *autocast* is several times slower than fp32, so
it is never used for the tower). Frozen passes run under ``torch.inference_mode``, except those that
feed a training step: inference tensors cannot be saved for backward, so those use ``no_grad``.

Trainable model (``train.precision``): bf16 autocast on a GPU; fp32 on a CPU unless asked for.
Whatever the tower returns reaches the model as fp32 (:func:`model_input`), so the decoder's
residual stream never runs in bf16.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import torch

MODES = ("fp32", "bf16-weights", "bf16-autocast")


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (Linux: AVX512-BF16 or AMX-BF16 in /proc/cpuinfo)."""
    try:
        return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", Path("/proc/cpuinfo").read_text()))
    except OSError:
        return False


def resolve(setting: str, device: torch.device) -> str:
    """``encoder.precision`` (auto | fp32 | bf16) on ``device`` -> one of :data:`MODES`."""
    if setting == "fp32":
        return "fp32"
    if device.type == "cuda":
        return "bf16-autocast"
    return "bf16-weights" if setting == "bf16" or cpu_has_bf16() else "fp32"


def prepare(backbone, mode: str):
    """Cast the frozen image tower for ``mode`` (in place); returns the backbone."""
    if mode == "bf16-weights":
        backbone.clip.visual.to(torch.bfloat16)
    return backbone


def encode(backbone, images: torch.Tensor, mode: str, feature: str = "tokens", for_training: bool = False):
    """The frozen tower's ``feature`` (tokens | pooled) for a batch of images, without autograd."""
    grad_off = torch.no_grad() if for_training else torch.inference_mode()
    bf16_in = mode == "bf16-weights"
    with grad_off, torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode == "bf16-autocast"):
        images = images.to(torch.bfloat16) if bf16_in else images
        return backbone.tokens(images) if feature == "tokens" else backbone.pooled(images)


def pool(backbone, tokens: torch.Tensor, mode: str) -> torch.Tensor:
    """``pooled`` from cached ``tokens`` (ViTs): the tower's last norm and projection only."""
    dtype = torch.bfloat16 if mode == "bf16-weights" else torch.float32
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode == "bf16-autocast"):
        return backbone.pool_tokens(tokens.to(dtype))


def model_input(x: torch.Tensor) -> torch.Tensor:
    """Frozen features as the trainable model reads them: fp32 (autocast lowers what it should)."""
    return x if x.dtype == torch.float32 else x.float()


def model_autocast(device: torch.device, setting: str = "auto"):
    """``train.precision`` (auto | fp32 | bf16): bf16 autocast for the trainable model, or none."""
    bf16 = setting == "bf16" or (setting == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
