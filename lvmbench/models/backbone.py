"""The frozen CLIP encoder: open_clip loading, token extraction, pooled and text embeddings.

Weights come from the local cache or a file; nothing is downloaded when no network is reachable.
"""
from __future__ import annotations

import logging
import os
import socket
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError, unknown
from ..weights import looks_like_path

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _hub_reachable(host: str = "huggingface.co", timeout: float = 1.5) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _ensure_offline_when_unreachable() -> None:
    """Make the hub libraries fail at once instead of retrying for a minute when offline."""
    if "HF_HUB_OFFLINE" not in os.environ and not _hub_reachable():
        os.environ["HF_HUB_OFFLINE"] = "1"
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True  # read once, when imported (open_clip imports it): set it now too


@dataclass(frozen=True)
class Weights:
    """What a backbone loads: open_clip's ``pretrained`` argument (a tag, or a checkpoint file's absolute
    path) and the activation its transformer blocks are built with."""

    backbone: str
    source: str
    is_file: bool
    quick_gelu: bool
    why: str = ""  # why QuickGELU, when it is used

    def describe(self) -> str:
        """One line for a run's log and summary, e.g. ``ViT-B-16 with tag openai, QuickGELU (...)``."""
        what = f"file {self.source}" if self.is_file else f"tag {self.source}"
        act = f"QuickGELU ({self.why})" if self.quick_gelu else "GELU"
        return f"{self.backbone} with {what}, {act}"


def resolve_weights(name: str, pretrained: str) -> Weights:
    """Check a backbone name and its weights (tag in the local cache, or a file) without loading them.

    Returns what to load and how (:class:`Weights`); raises a one-line UserError otherwise.
    """
    import open_clip

    from . import tiny_clip

    tiny_clip.register()
    if name not in open_clip.list_models():
        raise unknown("backbone", name, open_clip.list_models())
    config_qg = bool((open_clip.get_model_config(name) or {}).get("quick_gelu", False))
    if name == "tiny-clip" and pretrained in ("embedded", "default"):
        return Weights(name, str(tiny_clip.CHECKPOINT), True, config_qg)
    if looks_like_path(pretrained):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise UserError(f"checkpoint file not found: {path}")
        if not config_qg and is_torchscript_archive(path):
            # OpenAI's released .pt files are TorchScript archives of models trained with QuickGELU.
            return Weights(name, str(path), True, True, "an OpenAI TorchScript archive, trained with it")
        return Weights(name, str(path), True, config_qg, f"model config {name}" if config_qg else "")
    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained not in tags:
        raise unknown(f"pretrained tag for {name}", pretrained, tags or ["<a checkpoint path>"])
    _ensure_offline_when_unreachable()
    tag_qg = bool(open_clip.get_pretrained_cfg(name, pretrained).get("quick_gelu", False))
    why = f"model config {name}" if config_qg else ("as the tag's weights were trained" if tag_qg else "")
    return Weights(name, pretrained, False, config_qg or tag_qg, why)


def is_torchscript_archive(path: Path) -> bool:
    """A TorchScript zip archive (OpenAI's released checkpoints), told by the entries TorchScript writes."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


def read_state_dict(path: Path) -> dict:
    """A checkpoint file's state dict as open_clip reads it, TorchScript archives included; tensors are
    memory-mapped where the format allows, so checking a large checkpoint costs little."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if is_torchscript_archive(path):
        state = torch.jit.load(str(path), map_location="cpu").state_dict()
        for key in ("input_resolution", "context_length", "vocab_size"):
            state.pop(key, None)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # a legacy (non-zip) pickle cannot be memory-mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise UserError(f"{path} holds no state dict (found {type(state).__name__})")
    if next(iter(state)).startswith("module."):
        state = {k[7:]: v for k, v in state.items()}
    return dict(state)


def load_clip(name: str, pretrained: str):
    """Create an open_clip model with weights from a tag (local cache) or a checkpoint file, built with
    the activation the weights were trained with (QuickGELU for OpenAI's weights)."""
    return load_weights(resolve_weights(name, pretrained))


def load_weights(weights: Weights):
    import open_clip

    try:
        if weights.is_file and is_torchscript_archive(Path(weights.source)):
            model = open_clip.create_model(weights.backbone, force_quick_gelu=weights.quick_gelu)
            _load_state(model, read_state_dict(Path(weights.source)))
            return model
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="QuickGELU mismatch")  # the activation is chosen above
            return open_clip.create_model(weights.backbone, pretrained=weights.source,
                                          force_quick_gelu=weights.quick_gelu)
    except Exception as exc:  # noqa: BLE001 - any load failure is reported as one line
        if weights.is_file:
            raise UserError(f"{weights.source} is not a {weights.backbone} checkpoint: "
                            f"{_one_line(exc, 300)}") from None
        raise _not_cached(weights.backbone, weights.source, exc) from None


def _load_state(model: nn.Module, state: dict) -> None:
    from open_clip.model import resize_pos_embed

    state = {k: v for k, v in state.items() if k != "attn_mask"}  # a buffer open_clip rebuilds
    resize_pos_embed(state, model)
    model.load_state_dict(state, strict=True)


def _one_line(exc: Exception, limit: int) -> str:
    """An exception's whole message on one line (torch's load errors put the cause after a first line)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _not_cached(name: str, pretrained: str, exc: Exception) -> UserError:
    offline = " (no network: the hub is offline)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
    return UserError(f"pretrained weights '{pretrained}' for {name} are not in the local cache and cannot be "
                     f"downloaded{offline} ({type(exc).__name__}); fetch them once with network access or "
                     f"pass --pretrained /path/to/checkpoint")


def _is_checkpoint_file(path: Path) -> bool:
    """A PyTorch zip archive (also TorchScript), a legacy pickle, or a safetensors file, by its first bytes."""
    with open(path, "rb") as f:
        head = f.read(9)
    safetensors = len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 2**30
    return zipfile.is_zipfile(path) or head[:1] == b"\x80" or safetensors


def ensure_weights(name: str, pretrained: str) -> Weights:
    """Before a run starts (the parent's preflight): a checkpoint file must look like one, and a
    pretrained tag must be in the local cache, where it is downloaded now if the network allows;
    without a network this fails at once instead of retrying."""
    import open_clip

    weights = resolve_weights(name, pretrained)
    if weights.is_file:
        path = Path(weights.source)
        if not _is_checkpoint_file(path):
            raise UserError(f"{path} is not a checkpoint (expected a PyTorch or safetensors file)")
        check_architecture(weights)
        return weights
    try:
        open_clip.download_pretrained(open_clip.get_pretrained_cfg(name, weights.source))
    except Exception as exc:  # noqa: BLE001 - hub and HTTP errors alike
        raise _not_cached(name, pretrained, exc) from None
    return weights


# Entries open_clip adapts when it loads a checkpoint (it resizes position embeddings, reshapes the
# logit scale and bias, rebuilds the attention mask), so their shapes need not match the model's.
ADAPTED = ("positional_embedding", "logit_scale", "logit_bias", "attn_mask")


def check_architecture(weights: Weights) -> None:
    """A checkpoint file must hold the backbone's tensors: checked against a model built on the meta
    device (no memory, no weights), so a checkpoint of another architecture fails before a run exists,
    with one line naming both."""
    import open_clip

    path = Path(weights.source)
    try:
        with _quiet():
            state = read_state_dict(path)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file fails in many ways  # noqa: BLE001 - a corrupt or foreign file
        raise UserError(f"{path} cannot be read as a checkpoint: {_one_line(exc, 160)}") from None
    with _quiet():  # open_clip logs that a model without weights is random: this one is only a shape
        model = open_clip.create_model(weights.backbone, device="meta")
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(getattr(v, "shape", ())) for k, v in state.items() if k not in ("attn_mask",)}
    if "positional_embedding" in have and "positional_embedding" not in want:
        return  # an old-format text tower that open_clip converts on load: its names differ by design
    missing = [k for k in want if k not in have and not k.endswith("attn_mask") and k != "logit_bias"]
    extra = [k for k in have if k not in want]
    wrong = [k for k in want if k in have and have[k] != want[k] and not k.endswith(ADAPTED)]
    if not (missing or extra or wrong):
        return
    if wrong:
        detail = f"{wrong[0]} is {list(have[wrong[0]])}, {weights.backbone} needs {list(want[wrong[0]])}"
    elif missing:
        detail = f"{len(missing)} tensors missing, e.g. {missing[0]}"
    else:
        detail = f"{len(extra)} tensors {weights.backbone} does not have, e.g. {extra[0]}"
    raise UserError(f"{path} holds {_describe_tower(have)}, not {weights.backbone} ({_describe_tower(want)}): "
                    f"{detail}; pass the --backbone it was trained as")


@contextmanager
def _quiet():
    """Silence open_clip's warnings and log lines for a moment."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def _describe_tower(shapes: dict[str, tuple]) -> str:
    """The image tower a state dict holds, and the open_clip model names that build it, in a few words."""
    import open_clip

    conv = shapes.get("visual.conv1.weight")
    blocks = {k.split(".")[3] for k in shapes if k.startswith("visual.transformer.resblocks.")}
    if conv and len(conv) == 4 and blocks:
        geometry = {"patch_size": conv[-1], "width": conv[0], "layers": len(blocks)}
        what = f"a ViT image tower (patch {conv[-1]}, width {conv[0]}, {len(blocks)} blocks)"
    elif any(k.startswith("visual.layer1.") for k in shapes):
        stages = [len({k.split(".")[2] for k in shapes if k.startswith(f"visual.layer{i}.")}) for i in range(1, 5)]
        geometry = {"layers": stages}
        what = f"a ResNet image tower (blocks {stages})"
    else:
        return f"an unrecognised state dict ({len(shapes)} tensors)"
    names = [n for n in open_clip.list_models() if _matches((open_clip.get_model_config(n) or {}), geometry)]
    return what + (f", as in {', '.join(names[:3])}" if names else "")


def _matches(cfg: dict, geometry: dict) -> bool:
    vision = cfg.get("vision_cfg", {})
    return "timm_model_name" not in vision and all(
        (list(vision.get(k)) if isinstance(vision.get(k), (list, tuple)) else vision.get(k)) == v
        for k, v in geometry.items())


class Backbone(nn.Module):
    """A CLIP model whose image tower is frozen; exposes what the methods read.

    ``tokens(images)`` is the full sequence (class token + every patch token) after the last
    transformer block, before ``ln_post`` and the projection; for ResNets the layer4 feature map
    flattened, with its spatial mean prepended as token 0. ``pooled(images)`` is the projected
    image embedding (CLIP's own ``encode_image``).
    """

    def __init__(self, name: str, pretrained: str, clip: nn.Module | None = None):
        super().__init__()
        self.name, self.pretrained = name, pretrained
        self.weights = None if clip is not None else resolve_weights(name, pretrained)  # what was loaded
        self.clip = clip if clip is not None else load_weights(self.weights)  # ``clip``: e.g. random weights
        self.clip.eval().requires_grad_(False)
        visual = self.clip.visual
        self.is_vit = hasattr(visual, "transformer")
        self.width = visual.transformer.width if self.is_vit else visual.attnpool.c_proj.in_features
        self.embed_dim = int(getattr(visual, "output_dim", self.clip.text_projection.shape[-1]))
        size = visual.image_size
        self.image_size = size[0] if isinstance(size, (tuple, list)) else int(size)
        self.mean = tuple(getattr(visual, "image_mean", None) or OPENAI_MEAN)
        self.std = tuple(getattr(visual, "image_std", None) or OPENAI_STD)
        self.eval()

    def train(self, mode: bool = True):
        """The frozen towers stay in eval mode whatever the caller asks."""
        return super().train(False)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        visual = self.clip.visual
        if self.is_vit:
            return visual.transformer(visual._embeds(images))
        x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(images)))))
        x = x.flatten(2).transpose(1, 2)
        return torch.cat([x.mean(1, keepdim=True), x], dim=1)

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(images)

    def pool_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """``pooled`` from the output of ``tokens`` (ViTs only): so one token cache serves both."""
        visual = self.clip.visual
        pooled, _ = visual._pool(tokens)
        return pooled @ visual.proj if visual.proj is not None else pooled

    def transforms(self, train: bool, hflip: bool = True, crop_scale: tuple[float, float] = (0.08, 1.0),
                   decode: str = "pil"):
        """The study's crops with open_clip's preprocessing: the backbone's own normalisation, bicubic."""
        from ..data.transforms import open_clip_transforms

        return open_clip_transforms(self.image_size, train, self.mean, self.std, hflip, crop_scale, decode)

    def tokenizer(self):
        import open_clip

        return open_clip.get_tokenizer(self.name)
