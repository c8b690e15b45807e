"""The embedded ``tiny-clip`` backbone loads through open_clip and classifies MNIST zero-shot."""

from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from lvmbench.models import tiny_clip

MNIST = Path(tiny_clip.__file__).resolve().parents[1] / "data" / "assets" / "mnist_digits.npz"
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEMPLATES = ["a photo of the digit {name}.", "a handwritten {name}.", "the number {num} written by hand."]


@pytest.fixture(scope="module")
def clip():
    """(model, preprocess, tokenizer) loaded the way the benchmark loads it."""
    tiny_clip.register()
    tiny_clip.register()  # idempotent
    model, _, preprocess = open_clip.create_model_and_transforms(
        "tiny-clip", pretrained=str(tiny_clip.CHECKPOINT)
    )
    return model.eval(), preprocess, open_clip.get_tokenizer("tiny-clip")


def test_checkpoint_is_small():
    assert tiny_clip.CHECKPOINT.stat().st_size <= 4_000_000


def test_shapes(clip):
    model, _, tokenizer = clip
    tokens = []
    hook = model.visual.transformer.resblocks[-1].register_forward_hook(
        lambda _m, _i, out: tokens.append(out)
    )
    with torch.no_grad():
        image = model.encode_image(torch.randn(2, 3, 28, 28))
        text = model.encode_text(tokenizer(["a handwritten seven.", "the digit 3."]))
    hook.remove()
    assert image.shape == (2, 64) and text.shape == (2, 64)
    assert tokens[0].shape == (2, 50, 64)  # class token + 7x7 patches, width 64


def test_zero_shot_mnist(clip):
    model, preprocess, tokenizer = clip
    data = np.load(MNIST)
    # The file is sorted by label, so take every 5th digit: 2,000 digits of all ten classes.
    images, labels = data["images"][::5], data["labels"][::5]
    mean = torch.tensor(model.visual.preprocess_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.visual.preprocess_cfg["std"]).view(1, 3, 1, 1)
    x = (torch.from_numpy(images).float().div(255).unsqueeze(1).expand(-1, 3, -1, -1) - mean) / std
    # Same tensors as the model's own eval transform applied to a grayscale PIL image.
    assert torch.allclose(preprocess(Image.fromarray(images[7])), x[7], atol=1e-5)
    with torch.no_grad():
        prompts = [t.format(name=n, num=i) for i, n in enumerate(NAMES) for t in TEMPLATES]
        text = F.normalize(model.encode_text(tokenizer(prompts)), dim=-1)
        classes = F.normalize(text.view(10, len(TEMPLATES), -1).mean(1), dim=-1)
        pred = (F.normalize(model.encode_image(x), dim=-1) @ classes.T).argmax(1).numpy()
    accuracy = (pred == labels).mean()
    assert accuracy >= 0.40, f"zero-shot accuracy {accuracy:.1%}"
