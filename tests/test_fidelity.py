"""The two recipes against their sources.

``paper`` is what the study's released code ran (Imbalance-VLM/Imbalance-VLM); ``reference`` is each
method as its authors' code defines it. The formulas below are re-implemented here from those sources
(never by calling lvmbench), and lvmbench's code is checked against them.
"""
import math
import subprocess
import sys

import pytest
import torch

from lvmbench import config
from lvmbench.errors import UserError


# --------------------------------------------------------------------------- recipe key


def test_unknown_recipe_is_one_line_naming_both():
    with pytest.raises(UserError) as err:
        config.parse_sets(["recipe=papper"])
    message = str(err.value)
    assert "\n" not in message and "paper" in message and "reference" in message
    with pytest.raises(UserError, match="unknown recipe 'x'"):
        config.resolve("mnist-lt", "tiny-clip", "ce", overrides={"recipe": "x"})


def test_unknown_recipe_on_the_command_line_stores_nothing(tmp_path):
    env = {"LVMBENCH_RESULTS": str(tmp_path / "r.duckdb"), "LVMBENCH_RUNS": str(tmp_path / "runs"),
           "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "lvmbench", "run", "--headless", "--set", "recipe=nope"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "paper" in lines[0] and "reference" in lines[0]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "r.duckdb").exists()


def test_every_key_a_recipe_sets_is_a_spec_key_in_the_hash():
    keys = set()
    for profile in [*config.RECIPE_PROFILES.values(), *config.RECIPE_METHOD_PROFILES.values(),
                    *config.RECIPE_DATASET_PROFILES.values()]:
        keys |= set(profile)
    assert keys - {k for k in keys if k.startswith("loss.")} <= set(config.SCHEMA)
    paper = config.resolve("mnist-lt", "tiny-clip", "crt")
    reference = config.resolve("mnist-lt", "tiny-clip", "crt", overrides={"recipe": "reference"})
    assert paper["recipe"] == "paper" and reference["recipe"] == "reference"
    assert config.config_hash(paper) != config.config_hash(reference)
    differ = {k for k in paper if paper[k] != reference[k]}
    assert differ == {"recipe", "sampler.balanced", "crt.reinit", "disalign.confidence_init", "train.decay_params"}


def test_recipe_profiles_resolve_per_method_and_dataset():
    ldam = config.resolve("mnist-lt", "tiny-clip", "ldam")
    assert (ldam["head.kind"], ldam["loss.s"], ldam["loss.drw_start"]) == ("linear", 1.0, None)
    ldam = config.resolve("mnist-lt", "tiny-clip", "ldam", overrides={"recipe": "reference"})
    assert (ldam["head.kind"], ldam["head.scale"], ldam["loss.s"], ldam["loss.drw_start"]) == ("cosine", 1.0, 30.0, 0.8)
    # The user's --set wins over the recipe.
    ldam = config.resolve("mnist-lt", "tiny-clip", "ldam", overrides={"recipe": "reference", "loss.drw_start": None})
    assert ldam["loss.drw_start"] is None
    assert config.resolve("inat18", "ViT-B-16", "ce")["train.select"] == "test"
    assert config.resolve("inat18", "ViT-B-16", "ce", overrides={"recipe": "reference"})["train.select"] == "val"
    assert config.resolve("places-lt", "ViT-B-16", "ce")["train.select"] == "val"


# --------------------------------------------------------------------------- schedule


def usb_cosine_factor(current_step, num_training_steps, num_warmup_steps, num_cycles=7.0 / 16.0):
    """USB's get_cosine_schedule_with_warmup (imblearn/core/utils/build.py), written from the source."""
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    progress = float(current_step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
    return max(0.0, math.cos(math.pi * num_cycles * progress))


@pytest.mark.parametrize("recipe", config.RECIPES)
def test_lr_factor_at_every_step_is_the_studys(recipe):
    from lvmbench.train.loop import lr_factor

    spec = config.resolve("imagenet-lt", "ViT-L-14", "ce", overrides={"recipe": recipe})
    iters, warmup, cycles = spec["train.iters"], spec["train.warmup_iters"], spec["train.cosine_cycles"]
    assert (iters, warmup) == (8192, 512)
    for step in range(iters):
        assert lr_factor(step, warmup, iters, cycles) == pytest.approx(usb_cosine_factor(step, iters, warmup), abs=1e-12)
    assert lr_factor(iters - 1, warmup, iters, cycles) == pytest.approx(0.1953, abs=1e-3)


def test_scheduler_in_the_loop_follows_the_factor():
    """The loop's LambdaLR gives step s (0-based) the factor of s, as USB's scheduler does."""
    from lvmbench.train.loop import lr_factor

    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.03)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, 8, 40))
    for step in range(40):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.03 * usb_cosine_factor(step, 40, 8))
        opt.step()
        sched.step()


# --------------------------------------------------------------------------- decoder


def test_decoder_is_timm_blocks_without_a_final_norm():
    from timm.models.vision_transformer import Block

    from lvmbench.models.decoder import Decoder

    torch.manual_seed(0)
    decoder = Decoder(64, depth=3, heads=4, mlp_ratio=0.5)
    blocks = torch.nn.Sequential(*[Block(64, 4, mlp_ratio=0.5, qkv_bias=True) for _ in range(3)])
    blocks.load_state_dict(decoder.blocks.state_dict())
    tokens = torch.randn(2, 17, 64)
    decoder.eval(), blocks.eval()
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in decoder.modules() if m not in decoder.blocks.modules())
    torch.testing.assert_close(decoder(tokens), blocks(tokens)[:, 0], rtol=0, atol=0)
    normed = Decoder(64, depth=3, heads=4, mlp_ratio=0.5, final_norm=True)
    assert isinstance(normed.norm, torch.nn.LayerNorm)
