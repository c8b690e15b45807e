"""Train the ``tiny-clip`` backbone and write ``lvmbench/models/assets/tiny-clip.pt``.

The model (config ``lvmbench/models/assets/tiny-clip.json``) is trained from scratch with
the standard CLIP objective (symmetric InfoNCE, learnable logit scale) on scikit-learn's
bundled 8x8 digits, upsampled to 28x28 with MNIST-like augmentation and paired with
captions drawn from several templates. Afterwards the zero-shot top-1 accuracy on the
10,000 real MNIST digits of ``lvmbench/data/assets/mnist_digits.npz`` is printed.

Usage: ``python scripts/train_tiny_clip.py [--steps N] [--seed S] [--out PATH]``
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lvmbench.models import tiny_clip  # noqa: E402

MNIST = ROOT / "lvmbench" / "data" / "assets" / "mnist_digits.npz"
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TRAIN_TEMPLATES = [
    "a photo of the digit {name}.",
    "a handwritten {name}.",
    "the number {num} written by hand.",
    "a photo of the number {num}.",
    "an image of the digit {name}.",
    "a drawing of a {name}.",
    "a handwritten digit {num}.",
    "a scan of the number {name}.",
    "a black and white image of a {name}.",
    "the digit {num}.",
    "a blurry photo of a {name}.",
    "a picture of the number {name}.",
]
EVAL_TEMPLATES = [
    "a photo of the digit {name}.",
    "a handwritten {name}.",
    "the number {num} written by hand.",
    "a handwritten digit {num}.",
]


def captions(templates: list[str]) -> list[list[str]]:
    """Return ``[class][template]`` caption strings."""
    return [[t.format(name=n, num=i) for t in templates] for i, n in enumerate(NAMES)]


def augment(x8: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Turn 8x8 digits in [0,1] ([B,1,8,8]) into randomly distorted MNIST-like 28x28 digits."""
    b = x8.shape[0]

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, *shape, generator=gen)

    x = F.interpolate(x8, size=32, mode="bicubic", align_corners=False).clamp(0, 1)
    # Random affine: the digit fills ~60-80 % of the frame like MNIST's 20px box in 28px.
    angle = u(-0.3, 0.3)
    shear = u(-0.3, 0.3)
    sx, sy = 1 / u(0.55, 0.8), 1 / u(0.55, 0.8)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([
        torch.stack([sx * cos, sx * (-sin + shear), u(-0.2, 0.2)], 1),
        torch.stack([sy * sin, sy * cos, u(-0.2, 0.2)], 1),
    ], 1)
    grid = F.affine_grid(theta, [b, 1, 28, 28], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Stroke width: thin (erode) 35 %, thicken (dilate) 15 % of the batch.
    k = torch.rand(b, 1, 1, 1, generator=gen)
    x = torch.where(k < 0.35, 0.5 * (x - F.max_pool2d(-x, 3, 1, 1)), x)
    x = torch.where(k > 0.85, F.max_pool2d(x, 3, 1, 1), x)
    # Contrast: map [lo, hi] to [0, 1]; a high `lo` thins the upsampled strokes.
    lo = u(0.2, 0.55, 1, 1, 1)
    hi = lo + u(0.1, 0.35, 1, 1, 1)
    x = ((x - lo) / (hi - lo)).clamp(0, 1)
    # Random Gaussian blur (sigma 0.3-0.8) on half of the batch.
    sigma = u(0.3, 0.8, 1, 1, 1)
    r = torch.arange(-2, 3, dtype=torch.float32).view(1, 5)
    k1 = torch.exp(-(r ** 2) / (2 * sigma.view(b, 1) ** 2))
    k1 = k1 / k1.sum(1, keepdim=True)
    kern = (k1[:, :, None] * k1[:, None, :]).unsqueeze(1)
    blurred = F.conv2d(x.view(1, b, 28, 28), kern, padding=2, groups=b).view(b, 1, 28, 28)
    x = torch.where(torch.rand(b, 1, 1, 1, generator=gen) < 0.5, blurred, x)
    return x.clamp(0, 1)


def normalize(x: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """Grey [B,1,H,W] in [0,1] -> 3 channels normalised like the model's eval transform."""
    cfg = model.visual.preprocess_cfg
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    return (x.expand(-1, 3, -1, -1) - mean) / std


@torch.no_grad()
def zero_shot_accuracy(model, tokenizer, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 zero-shot accuracy on uint8 [N,28,28] digits with a prompt ensemble."""
    model.eval()
    caps = captions(EVAL_TEMPLATES)
    text = F.normalize(model.encode_text(tokenizer(sum(caps, []))), dim=-1)
    classes = F.normalize(text.view(len(NAMES), len(EVAL_TEMPLATES), -1).mean(1), dim=-1)
    correct = 0
    for i in range(0, len(images), 1000):
        x = torch.from_numpy(images[i:i + 1000]).float().div(255).unsqueeze(1)
        feats = F.normalize(model.encode_image(normalize(x, model)), dim=-1)
        pred = (feats @ classes.T).argmax(1).numpy()
        correct += int((pred == labels[i:i + 1000]).sum())
    return correct / len(images)


def train(model, tokenizer, steps: int, batch: int, lr: float, seed: int) -> None:
    """CLIP training on augmented sklearn digits with templated captions."""
    digits = load_digits()
    x8 = torch.tensor(digits.images, dtype=torch.float32).div(16).unsqueeze(1)
    y = torch.tensor(digits.target)
    tokens = tokenizer(sum(captions(TRAIN_TEMPLATES), []))  # [10*T, ctx], row = cls*T + tpl
    n_tpl = len(TRAIN_TEMPLATES)
    gen = torch.Generator().manual_seed(seed)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.98), eps=1e-6,
    )
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    model.train()
    start = time.time()
    for step in range(steps):
        idx = torch.randint(0, len(y), (batch,), generator=gen)
        tpl = torch.randint(0, n_tpl, (batch,), generator=gen)
        images = normalize(augment(x8[idx], gen), model)
        # Encode every distinct caption once, then gather each sample's caption feature.
        text_all = F.normalize(model.encode_text(tokens), dim=-1)
        text = text_all[y[idx] * n_tpl + tpl]
        img = F.normalize(model.encode_image(images), dim=-1)
        logits = model.logit_scale.exp() * img @ text.T
        target = torch.arange(batch)
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step:5d} loss {loss.item():.3f} scale {model.logit_scale.exp().item():.1f} "
                  f"{time.time() - start:.0f}s", flush=True)


def main() -> None:
    """Train, save as fp16 and report zero-shot MNIST accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="fixed for bitwise reproducibility")
    parser.add_argument("--out", type=Path, default=tiny_clip.CHECKPOINT)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    tiny_clip.register()
    model = open_clip.create_model(tiny_clip.MODEL_NAME)
    tokenizer = open_clip.get_tokenizer(tiny_clip.MODEL_NAME)
    start = time.time()
    train(model, tokenizer, args.steps, args.batch, args.lr, args.seed)
    print(f"trained in {time.time() - start:.0f}s")

    state = {k: v.detach().half() for k, v in model.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")

    model, _, _ = open_clip.create_model_and_transforms(tiny_clip.MODEL_NAME, pretrained=str(args.out))
    data = np.load(MNIST)
    acc = zero_shot_accuracy(model, tokenizer, data["images"], data["labels"])
    print(f"zero-shot top-1 on {len(data['labels'])} MNIST digits: {acc:.2%}")


if __name__ == "__main__":
    main()
