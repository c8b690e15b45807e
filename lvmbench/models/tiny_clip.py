"""The offline default backbone ``tiny-clip``: a tiny CLIP (ViT 28px/4, 64-d) in open_clip format.

Usage::

    from lvmbench.models import tiny_clip
    tiny_clip.register()
    model, _, preprocess = open_clip.create_model_and_transforms(
        "tiny-clip", pretrained=str(tiny_clip.CHECKPOINT))
    tokenizer = open_clip.get_tokenizer("tiny-clip")

The checkpoint is built by ``scripts/train_tiny_clip.py``; see ``assets/README.md``.
"""

from __future__ import annotations

from pathlib import Path

import open_clip

MODEL_NAME = "tiny-clip"
CONFIG_DIR = Path(__file__).resolve().parent / "assets"
CONFIG_FILE = CONFIG_DIR / f"{MODEL_NAME}.json"
CHECKPOINT = CONFIG_DIR / f"{MODEL_NAME}.pt"


def register() -> None:
    """Make open_clip aware of the ``tiny-clip`` config (safe to call repeatedly)."""
    if MODEL_NAME not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_FILE)
