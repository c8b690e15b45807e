"""The run spec: defaults, ``--set key=value`` parsing, validation with one-line errors, config hash.

A spec is a flat dict of dotted keys (``train.lr``) plus the run's identity (dataset, backbone,
pretrained, method, seed, data_root). Defaults resolve in this order: the study's defaults, the
recipe (``recipe=paper``: what the study's code ran; ``recipe=reference``: each method as its
authors defined it), the dataset's profile (the embedded ``mnist-lt`` trains briefly), the method's
registered defaults (:mod:`lvmbench.methods.entries`), the user's ``--set``. Every setting a recipe decides is a key of its own, so it shows in
``spec.json`` and in the config hash.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import catalog
from ..errors import UserError, unknown
from ..methods.hparams import OFF_VALUES, loss_defaults
from ..methods.loss_params import LOSSES
from ..weights import looks_like_path, resolve_pretrained, weights_identity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


# The store keeps every integer setting in a BIGINT column (``lvmbench/store/schema.py`` derives its
# setting columns from this schema): an integer outside this range never starts a run.
INT64 = (-2 ** 63, 2 ** 63 - 1)
STORE_TYPES = {int: "BIGINT", float: "DOUBLE", str: "VARCHAR", bool: "BOOLEAN"}
TYPE_WORDS = {int: "an integer", float: "a number", str: "text", bool: "true or false"}


@dataclass(frozen=True)
class Param:
    """One setting: its default, type, range (``gt``/``ge``/``lt``/``le``, pydantic's names), allowed
    values and a note on special values. Integers are also bounded by the store's 64-bit columns."""

    default: Any
    type: type
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple = ()
    note: str = ""

    @property
    def rule(self) -> str:
        """The range as text: ``> 0``, ``in [0, 1)``, ``between 0 and 4294967295``."""
        lo = (f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}") if {self.gt, self.ge} != {None} else ""
        hi = (f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})") if {self.lt, self.le} != {None} else ""
        if lo and hi:
            text = (f"between {lo[1:]} and {hi[:-1]}" if self.type is int and lo[0] == "[" and hi[-1] == "]"
                    else f"in {lo}, {hi}")
        elif lo:
            text = f"{'>=' if lo[0] == '[' else '>'} {lo[1:]}"
        elif hi:
            text = f"{'<=' if hi[-1] == ']' else '<'} {hi[:-1]}"
        else:
            text = ""
        return f"{text} ({self.note})" if text and self.note else text

    def in_range(self, value) -> bool:
        return ((self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
                and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le))

    @property
    def store_type(self) -> str:
        return STORE_TYPES[self.type]


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


RECIPES = ("paper", "reference")  # one data file each: lvmbench/recipes/<name>.toml

SCHEMA: dict[str, Param] = {
    "recipe": Param("paper", str, choices=RECIPES),
    # The study's training recipe (Wang et al. 2023, Sec. 4).
    "train.iters": Param(8192, int, gt=0),
    "train.batch_size": Param(256, int, gt=0),
    "train.lr": Param(0.03, float, gt=0),
    "train.momentum": Param(0.9, float, ge=0, le=1),
    "train.nesterov": Param(True, bool),
    "train.weight_decay": Param(5e-4, float, ge=0),
    "train.warmup_iters": Param(512, int, ge=0),
    # The lr schedule: the study's (per step: linear warm-up, then max(0, cos(pi * cycles * progress)), 7/16 ends
    # at ~0.2 lr) or LIFT's (CosineAnnealingLR(T_max=train.epochs) stepped once per epoch, no warm-up).
    "train.schedule": Param("study", str, choices=("study", "lift")),
    "train.cosine_cycles": Param(7 / 16, float, gt=0, note="0.5 ends at 0"),
    "train.epochs": Param(10, int, gt=0, note="train.schedule=lift: equal epochs of train.iters / epochs steps"),
    # Which split chooses the evaluated weights: the best val (or test) overall accuracy, or the final ones.
    "train.select": Param("val", str, choices=("val", "test", "final")),
    # Which parameters weight decay applies to: matrices only (the study's rule: no 1-D tensors, no biases) or all.
    "train.decay_params": Param("matrices", str, choices=("matrices", "all")),
    "train.eval_every": Param(256, int, gt=0),
    "train.optimizer": Param("sgd", str, choices=("sgd", "adamw")),
    "train.num_workers": Param(-1, int, ge=-1, note="-1 = auto: GPU the usable cores but one, CPU 0"),
    "train.log_every": Param(10, int, gt=0),
    "train.threads": Param(0, int, ge=0, note="0 = torch's default"),
    # auto: a GPU when there is one (refusing GPUs that torch cannot use), else the CPU; cpu: the CPU on purpose.
    "train.device": Param("auto", str, choices=("auto", "cuda", "cpu")),
    "decoder.depth": Param(3, int, ge=0),
    "decoder.heads": Param(4, int, gt=0),
    "decoder.mlp_ratio": Param(0.5, float, gt=0),
    "decoder.final_norm": Param(False, bool),  # the study's classifier reads the last block's token 0 directly
    # Decoder and linear-head init: the study's (PyTorch's default weights, zero biases) or timm's (trunc. normal 0.02).
    "decoder.init": Param("study", str, choices=("study", "timm")),
    "head.kind": Param("linear", str, choices=("linear", "cosine")),
    "head.scale": Param(30.0, float, gt=0),
    "head.init": Param("random", str, choices=("random", "text")),
    "loss": Param(None, str),
    "data.imbalance_ratio": Param(100.0, float, ge=1),
    "data.train_list": Param(None, str),
    "data.val_list": Param(None, str),
    "data.test_list": Param(None, str),
    "data.classnames": Param(None, str),
    "data.on_bad_image": Param("fail", str, choices=("fail", "skip")),
    "data.subsample_lt": Param(False, bool),
    "data.allow_missing_classes": Param(False, bool),  # a fixed-class-count dataset whose train split lacks some
    # Image preprocessing: the study's transforms (ImageNet statistics, bilinear), open_clip's (CLIP's, bicubic) or
    # LIFT's (the backbone's statistics, bilinear, evaluation at 8/7 of the size then a centre crop).
    "data.transform": Param("study", str, choices=("study", "open_clip", "lift")),
    # How images are decoded and transformed: PIL (the study's code), torchvision's decoder and transforms.v2 on
    # uint8 tensors (1.4x the images/s per core), or nvJPEG and transforms.v2 on the run's GPU (the loader's
    # workers only read bytes; CUDA runs only); see README, "Data loading".
    "data.decode": Param("pil", str, choices=("pil", "torchvision", "cuda")),
    "stage1.run_id": Param(None, str),
    # Class-balanced sampling: the study's weighted draws without replacement, or a class drawn uniformly.
    "sampler.balanced": Param("study", str, choices=("study", "uniform")),
    # cRT's classifier at the start of stage 2: the study's rule (re-initialised for ResNets, kept for ViTs).
    "crt.reinit": Param("by_backbone", str, choices=("by_backbone", "always", "never")),
    "disalign.confidence_init": Param("torch", str, choices=("torch", "authors")),
    # The class-weight norms MARC's final evaluation reads: a freshly initialised classifier's (the study's eval.py)
    # or the stage-1 classifier's (MARC's definition, what training reads under both).
    "marc.eval_norm": Param("fresh", str, choices=("fresh", "stage1")),
    "zeroshot.templates": Param("auto", str, choices=("auto", "imagenet", "generic", "simple")),
    "coop.n_ctx": Param(16, int, gt=0),
    "coop.shots": Param(0, int, ge=0, note="0 = full data"),
    "coop.class_chunk": Param(256, int, gt=0),
    "finetune.grad_checkpointing": Param(False, bool),
    # LIFT's parameter-efficient methods: adapter bottleneck / LoRA rank (0 = LIFT's rule from the class count).
    "peft.bottleneck": Param(0, int, ge=0, note="0 = LIFT's rule, 2**max(0, int(log2(classes / (2 * blocks))))"),
    "peft.vpt_len": Param(10, int, gt=0),
    # Test-time ensembling (LIFT's tte): logits averaged over the crops of each evaluated image.
    "eval.tte": Param(False, bool),
    "eval.tte_mode": Param("fivecrop", str, choices=("fivecrop", "tencrop")),
    "eval.tte_expand": Param(24, int, ge=0),
    "cache.mode": Param("eval", str, choices=("off", "eval", "train")),
    "cache.views": Param(1, int, gt=0),
    # Fast paths (lvmbench/train/encoder.py): auto = bf16 where the hardware runs it natively.
    "encoder.precision": Param("auto", str, choices=("auto", "fp32", "bf16")),
    "train.precision": Param("auto", str, choices=("auto", "fp32", "bf16")),
    "train.compile": Param(False, bool),
    "ckpt.every": Param(1024, int, ge=0, note="0 = only at the end"),  # resume loses at most this
}

MAX_SEED = 2 ** 32 - 1  # numpy's global seed
# A run's identity: what the command line's flags and a settings file's top-level keys name.
IDENTITY: dict[str, Param] = {
    "dataset": Param("mnist-lt", str), "backbone": Param("tiny-clip", str), "method": Param("ce", str),
    "seed": Param(0, int, ge=0, le=MAX_SEED), "pretrained": Param(None, str), "data_root": Param(None, str),
}

# Settings that change how fast or where a run goes, not what it computes.
NOT_HASHED = {"train.num_workers", "train.log_every", "train.threads", "train.device", "ckpt.every", "data.on_bad_image",
              "train.compile", "data.allow_missing_classes"}

RECIPE_DIR = Path(__file__).resolve().parents[1] / "recipes"


@functools.cache
def recipe_settings(name: str) -> dict[str, Any]:
    """What a recipe sets (``recipes/<name>.toml``): ``settings`` for every run, ``methods[m]`` and
    ``datasets[d]`` for one method or dataset; values parsed and checked as ``--set`` parses them."""
    check_value("recipe", name)
    with open(RECIPE_DIR / f"{name}.toml", "rb") as f:
        data = tomllib.load(f)

    def parsed(table: dict) -> dict[str, Any]:
        return parse_sets([f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in table.items()])

    return {"settings": parsed(data.get("settings", {})),
            "methods": {m: parsed(t) for m, t in data.get("methods", {}).items()},
            "datasets": {d: parsed(t) for d, t in data.get("datasets", {}).items()},
            # [pairs.<dataset>.<method>]: what the authors set for one method on one dataset
            "pairs": {(d, m): parsed(t) for d, ms in data.get("pairs", {}).items() for m, t in ms.items()}}


def parse_value(key: str, raw: str) -> Any:
    """Turn the text of ``--set key=raw`` into the key's type, or raise a one-line UserError."""
    param = SCHEMA[key]
    text = raw.strip()
    if key == "data.val_list" and text.lower() in (NO_FILE, "null", ""):
        return NO_FILE  # none here means no validation split, not the dataset's default file
    if text.lower() in ("none", "null") and param.default is None:
        return None
    try:
        if param.type is bool:
            if text.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError
            value = text.lower() in ("1", "true", "yes", "on")
        elif param.type is int:
            value = int(text)
        elif param.type is float:
            value = float(text)
        else:
            value = text
    except ValueError:
        raise UserError(f"--set {key}={raw}: expected {param.type.__name__}") from None
    check_value(key, value)
    return value


def has_type(value: Any, kind: type) -> bool:
    if kind is bool or isinstance(value, bool):
        return isinstance(value, bool) and kind is bool
    return isinstance(value, (int, float) if kind is float else kind)


def check_value(key: str, value: Any, schema: dict[str, Param] | None = None) -> None:
    """Check one value against its key's type, choices and range (and, for an integer, the store's)."""
    param = (schema or SCHEMA)[key]
    if value is None:
        return
    if not has_type(value, param.type):
        raise UserError(f"{key}={value!r}: expected {TYPE_WORDS[param.type]}")
    if key == "recipe" and value not in RECIPES:
        raise UserError(f"unknown recipe '{value}'; choose from paper (what the study's code ran) or reference "
                        "(each method as its authors' code defines it)")
    if param.choices and value not in param.choices:
        raise UserError(f"{key}={value}: choose from {', '.join(param.choices)}")
    if param.type is float and not math.isfinite(value):
        raise UserError(f"{key}={value}: must be a finite number{', ' + param.rule if param.rule else ''}")
    if not param.in_range(value):
        raise UserError(f"{key}={value}: must be {param.rule}")
    if param.type is int and not INT64[0] <= value <= INT64[1]:
        raise UserError(f"{key}={value}: out of range for the results store (a 64-bit integer, "
                        f"{INT64[0]} to {INT64[1]})")


def typed_value(key: str, value: Any) -> Any:
    """A value that already has a type (a TOML file's): checked as the schema declares it, never read
    from text (``"5"`` is no integer); an integer for a number setting becomes a float."""
    param = SCHEMA[key]
    if isinstance(value, str) and param.type is str:
        return parse_value(key, value)  # "none" for no file, as on the command line
    check_value(key, value)
    return float(value) if param.type is float and has_type(value, int) else value


def check_identity(identity: dict[str, Any]) -> None:
    """Check the identity values (dataset, backbone, method, seed, ...) that are given: types, the seed's range."""
    for key, value in identity.items():
        if isinstance(value, os.PathLike):
            continue
        if value is None and IDENTITY[key].default is not None:
            raise UserError(f"{key} is missing (null)")
        if key == "seed" and has_type(value, int) and not IDENTITY["seed"].in_range(value):
            raise UserError(f"--seed {value}: must be {IDENTITY['seed'].rule}")
        check_value(key, value, IDENTITY)
        if isinstance(value, str) and not value.strip() and key in ("dataset", "backbone", "method"):
            raise UserError(f"{key} is empty")


def split_pairs(pairs: list[str] | None) -> dict[str, str]:
    """``key=value`` strings as ``{key: value}``; a key given twice is refused, naming both."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UserError(f"--set {pair}: expected key=value")
        key, raw = pair.split("=", 1)
        key = key.strip()
        if key in out:
            raise UserError(f"--set {key} is given twice ({key}={out[key]} and {pair.strip()}); give each key once")
        out[key] = raw
    return out


def parse_sets(pairs: list[str] | None) -> dict[str, Any]:
    """Parse ``key=value`` strings (``--set`` may be repeated and take several pairs; each key once)."""
    out: dict[str, Any] = {}
    for key, raw in split_pairs(pairs).items():
        if key.startswith("loss."):
            out[key] = _parse_loss_hparam(key, raw)
        elif key in SCHEMA:
            out[key] = parse_value(key, raw)
        else:
            raise unknown("--set key", key, list(SCHEMA) + ["loss.<hparam>"])
    return out


def _parse_loss_hparam(key: str, raw: str) -> Any:
    """A loss hyper-parameter as typed: a number, or off (:func:`effective` makes every number a float)."""
    text = raw.strip()
    if text.lower() in ("none", "null", "off"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    raise UserError(f"--set {key}={raw}: expected a number")


# Keys added after runs were stored without them, and what those runs did: before marc.eval_norm, MARC's
# evaluation read the stage-1 norms; before train.schedule, every run took the study's per-step schedule.
BEFORE_KEY: dict[str, Any] = {"marc.eval_norm": "stage1", "train.schedule": "study",
                              "train.epochs": SCHEMA["train.epochs"].default}


def effective(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with the value every loss hyper-parameter takes: the loss's defaults under the spec's
    recipe filled in where none is set, numbers as floats, a value that means off (``hparams.OFF_VALUES``)
    as None. An explicit default and an omitted one are then one configuration (one config hash, one
    result group, one table row)."""
    out = dict(spec)
    if "method" in out:  # a stored run's spec, made before some keys existed
        for key, value in BEFORE_KEY.items():
            out.setdefault(key, value)
    for hp, value in loss_defaults(spec.get("loss"), spec.get("recipe")).items():
        out.setdefault(f"loss.{hp}", value)
    off = OFF_VALUES.get(spec.get("loss"), {}) if isinstance(spec.get("loss"), str) else {}
    for key, value in out.items():
        if not key.startswith("loss."):
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            out[key] = float(value)
        if key[5:] in off and out[key] == off[key[5:]]:
            out[key] = None
    return out


def defaults(dataset: str, method: str, recipe: str | None = None) -> dict[str, Any]:
    """The settings a run of ``method`` on ``dataset`` under ``recipe`` (default: the default recipe)
    gets before any ``--set``: the study's defaults, the recipe's settings, the dataset's registered
    defaults, the recipe's for the dataset, the method's registered defaults, the recipe's for the
    method, the method's for the dataset; the Launch form shows the same."""
    info = catalog.method(method)
    recipe = SCHEMA["recipe"].default if recipe is None else recipe
    check_value("recipe", recipe)
    spec: dict[str, Any] = {k: p.default for k, p in SCHEMA.items()}
    spec["recipe"] = recipe
    chosen = recipe_settings(recipe)
    spec.update(chosen["settings"])
    data = catalog.DATASETS.get(dataset)
    spec.update(data.defaults if data is not None else {})
    spec.update(chosen["datasets"].get(dataset, {}))
    spec.update(info.defaults)
    spec.update(chosen["methods"].get(method, {}))
    spec.update(chosen["pairs"].get((dataset, method), {}))
    spec.update(info.dataset_defaults.get(dataset, {}))
    spec["loss"] = info.loss
    return spec


def resolve(dataset: str, backbone: str, method: str, *, seed: int = 0, pretrained: str | None = None,
            data_root: str | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the full, validated spec of one run."""
    check_identity({"dataset": dataset, "backbone": backbone, "method": method, "seed": seed,
                    "pretrained": pretrained, "data_root": data_root})
    catalog.dataset(dataset)  # a known dataset, or a one-line error naming the closest
    overrides = overrides or {}
    spec = defaults(dataset, method, overrides.get("recipe"))
    spec.update(overrides)
    spec.update(dataset=dataset, backbone=backbone, method=method, seed=int(seed),
                pretrained=resolve_pretrained(pretrained or catalog.DEFAULT_PRETRAINED.get(backbone, "openai")),
                data_root=str(Path(data_root).expanduser().resolve()) if data_root else None)
    for key in DATA_FILES:
        spec[key] = data_file(spec[key], spec["data_root"])
    validate(spec)
    return effective(spec)


# Files a dataset reads, given relative to --data-root (as its loader reads them) or absolute.
DATA_FILES = ("data.train_list", "data.val_list", "data.test_list", "data.classnames")
NO_FILE = "none"  # data.val_list=none: no validation split, even where the dataset has a default one


def data_file(value: str | None, data_root: str | None) -> str | None:
    """A data file's absolute path, so that a spec never depends on the folder it was typed in."""
    if value is None or value == NO_FILE or not data_root:
        return value
    return str((Path(data_root) / Path(value).expanduser()).resolve())


def validate(spec: dict[str, Any]) -> None:
    """Check every value and the loss hyper-parameters against the loss registry."""
    for key in SCHEMA:
        check_value(key, spec[key])
    loss_keys = {k[5:]: v for k, v in spec.items() if k.startswith("loss.")}
    if loss_keys or spec["loss"] is not None:
        name = spec["loss"]
        if name is None:
            raise UserError(f"method {spec['method']} trains no classifier; loss.* settings do not apply")
        if name not in LOSSES:
            raise unknown("loss", name, LOSSES)
        valid = LOSSES[name].defaults
        for hp in loss_keys:
            if hp not in valid:
                raise UserError(f"loss.{hp}: loss '{name}' takes {', '.join(sorted(valid)) or 'no hyper-parameters'}")
        try:
            LOSSES[name].check(loss_keys)  # types and ranges (the same under every recipe)
        except ValueError as exc:
            raise UserError(f"loss.{exc} ({name})") from None
    _check_method_keys(spec)


# Settings that only some kinds of method read: set elsewhere they would be silently ignored.
METHOD_KEYS = {"head.init=text": ("decoder", "linear_probe", "full_finetune", "peft"), "coop.shots": ("coop",),
               "finetune.grad_checkpointing": ("full_finetune",),
               "loss": ("decoder", "stage2", "linear_probe", "full_finetune", "coop", "peft"),
               "peft.*": ("peft",)}


def _check_method_keys(spec: dict[str, Any]) -> None:
    kind = catalog.method(spec["method"]).kind
    used = {"head.init=text": spec["head.init"] == "text", "coop.shots": spec["coop.shots"] > 0,
            "finetune.grad_checkpointing": spec["finetune.grad_checkpointing"], "loss": spec["loss"] is not None,
            "peft.*": spec["peft.bottleneck"] != 0 or spec["peft.vpt_len"] != SCHEMA["peft.vpt_len"].default}
    for key, kinds in METHOD_KEYS.items():
        if used[key] and kind not in kinds:
            raise UserError(f"{key} applies to methods of kind {', '.join(kinds)}; {spec['method']} is {kind}")


def class_names_needed(spec: dict[str, Any]) -> str | None:
    """Why this run needs the dataset's class names (the text tower reads them), or None."""
    kind = catalog.method(spec["method"]).kind
    if kind in ("zeroshot", "coop"):
        return spec["method"]
    return f"head.init=text ({spec['method']})" if spec["head.init"] == "text" else None


def loss_hparams(spec: dict[str, Any]) -> dict[str, Any]:
    return {k[5:]: v for k, v in spec.items() if k.startswith("loss.")}


def check_nproc(spec: dict[str, Any], nproc: int) -> None:
    """A data-parallel run splits every batch evenly over its ``nproc`` processes."""
    if nproc < 1:
        raise UserError(f"--nproc {nproc}: must be >= 1")
    if spec["train.batch_size"] % nproc:
        raise UserError(f"--nproc {nproc}: train.batch_size={spec['train.batch_size']} must be a multiple of it "
                        "(each process takes an equal slice of every batch)")


# What a run's directory records about it that is not part of what it computes.
CLASS_KEYS = ("classes.total", "classes.with_train", "classes.many", "classes.medium", "classes.few")
NOT_CONFIG = {"stage1.run_id", "config_hash", "result_group", "git_sha", "sweep_id", "fused_group", "fused_size",
              *CLASS_KEYS}


def hashed_body(spec: dict[str, Any], ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """Everything that changes what a run computes; a checkpoint file stands there by its content, not its name."""
    body = {k: v for k, v in spec.items() if k not in NOT_HASHED and k not in NOT_CONFIG and k not in ignore}
    if isinstance(body.get("pretrained"), str) and looks_like_path(body["pretrained"]):
        body["pretrained"] = weights_identity(body["pretrained"])
    return body


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_hash(spec: dict[str, Any]) -> str:
    """A short content hash of everything that changes what a run computes, every default resolved
    (:func:`effective`): a spec stored before loss defaults were filled in hashes as its run computed."""
    return _digest(hashed_body(effective(spec)))


def result_group(spec: dict[str, Any]) -> str:
    """The config hash without the seed: runs that share it differ only by their seed, so a table
    cell may average them (and must not average anything else)."""
    return _digest(hashed_body(effective(spec), ignore=("seed",)))


def regrouped(spec: dict[str, Any]) -> dict[str, Any]:
    """A stored run's spec as this version resolves it: defaults filled in and, where that changed
    anything, its config hash and result group recomputed (otherwise kept as stored, so that a run
    whose weights file moved away keeps the identity it was made with)."""
    full = effective(spec)
    if full == spec and spec.get("config_hash") and spec.get("result_group"):
        return spec
    return {**full, "config_hash": config_hash(full), "result_group": result_group(full)}
