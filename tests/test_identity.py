"""The identities that decide reuse: the config hash (which finished runs a sweep skips, which stage-1
run a stage-2 run reuses) and the feature-cache key the Trainer builds (which stored features a run
reads). A setting that changes results must change its identity; one that does not, must not."""
import json
import shutil

import pytest
import torch

from lvmbench import config
from lvmbench.runs import plan, scheduler
from lvmbench.models import tiny_clip
from lvmbench.train import cache
from lvmbench.train.batches import StepBatchSampler
from lvmbench.train.loop import Trainer


# Settings that change how fast or where a run goes, never what it computes. Written here, not read from
# lvmbench.config: a key added to the schema changes the hash unless someone decides otherwise here.
RESULT_NEUTRAL = {
    "train.num_workers": "loader processes",
    "train.threads": "CPU threads",
    "train.device": "where the run trains, as a machine without a GPU already decides (runs.device records it)",
    "train.log_every": "how often the loss is logged",
    "ckpt.every": "how often a resumable checkpoint is written",
    "train.compile": "torch.compile of the decoder",
    "data.on_bad_image": "fail or skip an unreadable image (a run that meets one either fails or lists it)",
    "data.allow_missing_classes": "run when the train split lacks classes (otherwise the run refuses to start)",
}
# Left out of the hash by design: a stage-2 job's hash is computed before its stage-1 run exists, and a
# sweep derives the stage-1 spec from the stage-2 spec's own keys (plan.stage1_spec).
NOT_HASHED_BY_DESIGN = {"stage1.run_id"}


def other_value(key: str, param: config.Param, current):
    """A valid value of ``key`` different from ``current``."""
    if param.type is bool:
        return not current
    if param.choices:
        return next(c for c in param.choices if c != current)
    if param.type is str:
        return ("ce" if current != "ce" else "focal") if key == "loss" else f"other-{key}"
    base = current if current is not None else param.default
    for candidate in (base * 2, base / 2, base + 1, 1, 0.5):
        value = param.type(candidate)
        if value != current and param.in_range(value):
            return value
    raise AssertionError(f"no other valid value for {key}")


def base_spec() -> dict:
    return config.resolve("mnist-lt", "tiny-clip", "focal")


@pytest.mark.parametrize("key", sorted(config.SCHEMA))
def test_every_setting_that_changes_results_changes_the_config_hash(key):
    spec = base_spec()
    changed = {**spec, key: other_value(key, config.SCHEMA[key], spec[key])}
    differs = config.config_hash(changed) != config.config_hash(spec)
    if key in RESULT_NEUTRAL or key in NOT_HASHED_BY_DESIGN:
        assert not differs, f"{key} ({RESULT_NEUTRAL.get(key, 'by design')}) must not change the config hash"
    else:
        assert differs, f"{key} changes what a run computes but not its config hash"


@pytest.mark.parametrize("key,value", [("dataset", "cifar100-lt"), ("backbone", "ViT-B-16"), ("pretrained", "laion"),
                                       ("method", "lade"), ("seed", 1), ("data_root", "/data/other"),
                                       ("loss.gamma", 1.0)])
def test_identity_and_loss_settings_change_the_config_hash(key, value):
    spec = base_spec()
    assert spec.get(key) != value
    assert config.config_hash({**spec, key: value}) != config.config_hash(spec)


def test_neutral_settings_are_real_keys():
    assert set(RESULT_NEUTRAL) | NOT_HASHED_BY_DESIGN <= set(config.SCHEMA)


# -- the feature-cache key the Trainer builds ------------------------------------------------------

@pytest.fixture
def cache_keys(monkeypatch, tmp_path):
    """Every feature-cache entry the Trainer opens, as (parts, key), in a cache of this test's own."""
    monkeypatch.setenv("LVMBENCH_CACHE", str(tmp_path / "cache"))
    opened = []

    class Recording(cache.FeatureCache):
        def __init__(self, root, parts, rows, **kwargs):
            super().__init__(root, parts, rows, **kwargs)
            opened.append(self.key)

    monkeypatch.setattr(cache, "FeatureCache", Recording)
    return opened


def trainer(tmp_path, ckpt, backbone="tiny-clip", **sets) -> Trainer:
    overrides = config.parse_sets(["train.threads=1", *(f"{k}={v}" for k, v in sets.items())])
    spec = config.resolve("mnist-lt", backbone, "ce", pretrained=ckpt, overrides=overrides)
    return Trainer(scheduler.prepare(spec, tmp_path / "runs"))


def val_key(t: Trainer, keys: list, views: int = 1) -> str:
    t.cached(f"val-{views}", t.dataset.val, views)
    return keys[-1]


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory):
    """tiny-clip weights of another initialisation; and the same architecture under another backbone name."""
    import open_clip

    tiny_clip.register()
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("other")
    torch.save(open_clip.create_model("tiny-clip").state_dict(), folder / "tiny-other.pt")
    shutil.copy(tiny_clip.CONFIG_FILE, folder / "tiny-clip-twin.json")
    open_clip.add_model_config(folder / "tiny-clip-twin.json")
    return str(folder / "tiny-other.pt")


@pytest.mark.slow
def test_the_cache_key_changes_with_weights_backbone_preprocessing_split_and_precision(
        tmp_path, cache_keys, random_tiny_clip, other_weights):
    base = trainer(tmp_path, random_tiny_clip, **{"encoder.precision": "fp32"})
    key = val_key(base, cache_keys)
    assert val_key(base, cache_keys) == key  # the same identity, the same entry
    variants = {
        "weights": val_key(trainer(tmp_path, other_weights, **{"encoder.precision": "fp32"}), cache_keys),
        "backbone": val_key(trainer(tmp_path, random_tiny_clip, "tiny-clip-twin", **{"encoder.precision": "fp32"}),
                            cache_keys),
        "precision": val_key(trainer(tmp_path, random_tiny_clip, **{"encoder.precision": "bf16"}), cache_keys),
        "views": val_key(base, cache_keys, views=2),
        "decode": val_key(trainer(tmp_path, random_tiny_clip, **{"encoder.precision": "fp32",
                                                                 "data.decode": "torchvision"}), cache_keys),
    }
    base.cached("test", base.dataset.test)
    variants["split"] = cache_keys[-1]
    base.backbone.mean = (0.5, 0.5, 0.5)  # another normalisation: another transform
    base.features.clear()
    variants["preprocessing"] = val_key(base, cache_keys)
    flipping = trainer(tmp_path, random_tiny_clip, **{"encoder.precision": "fp32"})
    flipping.hflip = not flipping.hflip  # augmented views with and without flips
    variants["augmentation"] = val_key(flipping, cache_keys, views=2)
    assert len({key, *variants.values()}) == 1 + len(variants), variants


@pytest.mark.slow
def test_the_cache_mode_decides_which_splits_are_read_from_the_cache(tmp_path, cache_keys,
                                                                       random_tiny_clip):
    """``off``: none; ``eval``: the evaluation splits; ``train``: also the training views, an entry of their own."""
    seen = {}
    for mode in ("off", "eval", "train"):
        t = trainer(tmp_path, random_tiny_clip, **{"cache.mode": mode, "cache.views": 2})
        before = len(cache_keys)
        t.predict("val")
        eval_keys = cache_keys[before:]
        split = t.dataset.val  # a small split stands in for the training one
        sampler = StepBatchSampler(split.labels, 16, "instance", seed=0, steps=1)
        next(t.train_inputs(split, sampler))
        seen[mode] = (eval_keys, cache_keys[before + len(eval_keys):])
    assert seen["off"] == ([], [])
    assert len(seen["eval"][0]) == 1 and seen["eval"][1] == []
    (eval_key,), (train_key,) = seen["train"]
    assert eval_key == seen["eval"][0][0] and train_key != eval_key
    manifest = json.loads((tmp_path / "cache" / train_key / "manifest.json").read_text())
    assert manifest["parts"]["views"] == 2
