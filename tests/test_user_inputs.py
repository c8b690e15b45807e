"""Datasets and weights as users have them: stand-ins in each documented layout, and the one-line
error (exit 2, nothing stored) for each malformed one."""
from __future__ import annotations

import json
import pickle

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from lvmbench import cli, config
from lvmbench.data import build_dataset
from lvmbench.errors import UserError
from lvmbench.models import tiny_clip


def lvmbench(capsys, *args) -> tuple[int, str, str]:
    """The CLI in this process: (exit code, stdout, stderr)."""
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(capsys, store, *args, match: str) -> str:
    results, runs = store
    code, _, err = lvmbench(capsys, *args)
    assert code == 2, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert match in err, err
    assert not results.exists() and not (runs.exists() and any(runs.iterdir())), "something was stored"
    return err


# -- checkpoints of two architectures --------------------------------------------------------------
@pytest.fixture
def other_arch(tmp_path):
    """A checkpoint of a second tiny open_clip config (patch 7, 2 blocks): not tiny-clip."""
    cfg = json.loads(tiny_clip.CONFIG_FILE.read_text())
    cfg["vision_cfg"].update(patch_size=7, layers=2)
    (tmp_path / "tiny-clip-p7.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "tiny-clip-p7.json")
    path = tmp_path / "ckpt" / "p7.pt"
    path.parent.mkdir()
    torch.save(open_clip.create_model("tiny-clip-p7").state_dict(), path)
    return path


def test_a_checkpoint_for_another_architecture_is_refused_before_a_run_exists(capsys, store, other_arch):
    err = one_line_error(capsys, store, "run", "--headless", "--backbone", "tiny-clip", "--pretrained",
                         str(other_arch), match=str(other_arch))
    assert "not tiny-clip" in err and "patch 7" in err and "patch 4" in err and "tiny-clip-p7" in err


def test_the_right_architecture_passes_the_check(other_arch):
    from lvmbench.models.backbone import ensure_weights

    assert ensure_weights("tiny-clip-p7", str(other_arch)).is_file
    assert ensure_weights("tiny-clip", str(tiny_clip.CHECKPOINT)).backbone == "tiny-clip"


def test_the_run_says_which_weights_it_loaded(capsys, store):
    from .conftest import TINY

    code, out, _ = lvmbench(capsys, "run", "--headless", "--method", "linear_probe", "--set", *TINY)
    assert code == 0
    run = next(p for p in store[1].iterdir())
    said = f"weights: tiny-clip with file {tiny_clip.CHECKPOINT}, GELU"
    assert said in out and said in (run / "stdout.log").read_text()
    assert json.loads((run / "status.json").read_text())["weights"] == said[len("weights: "):]


# -- data.on_bad_image=skip in every cache mode -------------------------------------------------------
def _folder_with_a_corrupt_test_image(root):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 3)):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    (root / "test" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root / "test" / "a" / "broken.png"


@pytest.mark.parametrize("mode,method,runs", [("eval", "linear_probe", 2), ("train", "ce", 1)])
def test_skip_skips_an_undecodable_test_image_in_every_cache_mode(capsys, store, tmp_path, mode, method, runs):
    from .conftest import TINY

    broken = _folder_with_a_corrupt_test_image(tmp_path / "data")
    for _ in range(runs):  # a second run reuses the features the first one cached
        code, out, err = lvmbench(capsys, "run", "--headless", "--dataset", "folder", "--data-root",
                                  str(tmp_path / "data"), "--method", method, "--set", *TINY,
                                  "data.on_bad_image=skip", f"cache.mode={mode}")
        assert code == 0, out + err
    for run in store[1].iterdir():
        status = json.loads((run / "status.json").read_text())
        assert status["status"] == "finished" and status["skipped_images"] == 1
        assert json.loads((run / "eval" / "test.json").read_text())["n_samples"] == 6
        assert str(broken) in (run / "bad_images.jsonl").read_text()
