"""The Launch form's rules: effective defaults and per-field checks, before anything starts.

Values are checked with the run spec's own rules (``config.SCHEMA`` / ``parse_value`` /
``parse_sets``); names the UI cannot check without loading torch (backbone, pretrained tag) are
left to the child, whose one-line error the Live screen shows.
"""
from __future__ import annotations

from pathlib import Path

from lvmbench.api import DEFAULT_PRETRAINED, IDENTITY, SCHEMA, UserError, check_identity, defaults, parse_sets, parse_value
from .jobs import LaunchRequest

# The main hyper-parameters the form shows (every other key goes through "more settings").
HPARAMS = {"train.iters": "Iterations", "train.batch_size": "Batch size", "train.lr": "Learning rate",
           "decoder.depth": "Decoder depth"}
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def default_for(key: str, dataset: str, method: str):
    """The value a run gets when the form leaves ``key`` empty: what ``config.resolve`` starts from."""
    return defaults(dataset, method)[key]


def default_pretrained(backbone: str) -> str:
    return DEFAULT_PRETRAINED.get(backbone.strip(), "openai")


def looks_like_path(text: str) -> bool:
    return "/" in text or text.startswith(("~", ".")) or text.endswith(CHECKPOINT_SUFFIXES)


def check(field: str, text: str) -> str | None:
    """The error of one field's text, or None. Empty means the default and is always fine."""
    text = text.strip()
    if not text:
        return "required" if field == "backbone" else None
    if field == "seed":
        if not text.isdigit():
            return f"an integer {IDENTITY['seed'].rule}"
        try:
            check_identity({"seed": int(text)})
        except UserError as exc:
            return str(exc).removeprefix("--seed ")
        return None
    if field == "pretrained" and looks_like_path(text) and not Path(text).expanduser().is_file():
        return f"checkpoint file not found: {text}"
    if field == "data_root" and not Path(text).expanduser().is_dir():
        return f"folder not found: {text}"
    try:
        if field in SCHEMA:
            parse_value(field, text)
        elif field == "sets":
            parse_sets(text.split())
    except UserError as exc:
        return str(exc).removeprefix("--set ")
    return None


def build_request(values: dict[str, str]) -> tuple[LaunchRequest | None, dict[str, str]]:
    """The request the form describes, or None and the error of each bad field."""
    errors = {f: e for f, text in values.items() if (e := check(f, text))}
    text = {f: v.strip() for f, v in values.items()}
    set_keys = {pair.split("=", 1)[0].strip() for pair in text.get("sets", "").split()}
    twice = [k for k in HPARAMS if text.get(k) and k in set_keys]
    if twice and "sets" not in errors:
        errors["sets"] = f"{twice[0]} is given twice (in its field and here); give each key once"
    if errors:
        return None, errors
    sets = [f"{k}={text[k]}" for k in HPARAMS if text.get(k)] + text.get("sets", "").split()
    return LaunchRequest(dataset=text["dataset"], backbone=text["backbone"], method=text["method"],
                         seed=int(text.get("seed") or 0), pretrained=text.get("pretrained") or None,
                         data_root=str(Path(text["data_root"]).expanduser()) if text.get("data_root") else None,
                         sets=tuple(sets)), {}
