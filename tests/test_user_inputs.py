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


# -- malformed categories.json and CIFAR pickles: one line naming the file and what was expected -----
def _inat_root(root, categories: str):
    root.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(root / "a.jpg")
    for name in ("iNaturalist18_train.txt", "iNaturalist18_val.txt"):
        (root / name).write_text("a.jpg 0\na.jpg 1\n")
    (root / "categories.json").write_text(categories)
    return root


@pytest.mark.parametrize("categories,what", [
    ('[{"id": 0, "name": "a"', "not valid JSON"),
    ('{"0": "a", "1": "b"}', "found dict"),
    ('[{"id": 0, "name": "a"}, {"id": 1, "title": "b"}]', "entry 1 is"),
    ('[{"id": 0, "name": "a"}, {"id": 5, "name": "b"}]', "ids are not 0..1"),
])
def test_malformed_categories_json(tmp_path, categories, what):
    root = _inat_root(tmp_path / "inat", categories)
    spec = config.resolve("inat18", "tiny-clip", "ce", data_root=str(root),
                          overrides={"data.allow_missing_classes": True})
    with pytest.raises(UserError) as exc:
        build_dataset(spec)
    message = str(exc.value)
    assert message.startswith(f"{root / 'categories.json'}: {what}") and "iNaturalist's categories.json" in message


def test_malformed_categories_json_on_the_command_line(capsys, store, tmp_path):
    root = _inat_root(tmp_path / "inat", "not json")
    one_line_error(capsys, store, "run", "--headless", "--dataset", "inat18", "--data-root", str(root),
                   match=f"{root / 'categories.json'}: not valid JSON")


def _cifar10(root, batch=None, meta=None):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    good = {b"data": rng.integers(0, 255, (20, 3072), dtype=np.uint8), b"labels": list(range(10)) * 2}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (base / name).write_bytes(pickle.dumps(good))
    if batch is not None:
        (base / "data_batch_3").write_bytes(batch)
    (base / "batches.meta").write_bytes(meta if meta is not None else
                                        pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))
    return base


@pytest.mark.parametrize("batch,meta,file,what", [
    (b"\x80\x04 corrupt", None, "data_batch_3", "cannot be unpickled"),
    (pickle.dumps([1, 2, 3]), None, "data_batch_3", "found list"),
    (pickle.dumps({b"images": 1}), None, "data_batch_3", "found keys"),
    (pickle.dumps({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}), None, "data_batch_3", "data is uint8 [4, 100]"),
    (None, pickle.dumps({b"names": []}), "batches.meta", "found keys"),
])
def test_malformed_cifar_pickles(capsys, store, tmp_path, batch, meta, file, what):
    base = _cifar10(tmp_path, batch, meta)
    err = one_line_error(capsys, store, "run", "--headless", "--dataset", "cifar10-lt", "--data-root",
                         str(tmp_path), match=f"{base / file}: {what}")
    assert "expected" in err


# -- fixed class counts, class summaries, no validation split ----------------------------------------
def _imagenet_lt(root, classes=(0, 1, 2, 3, 4)):
    """A few-class ImageNet-LT root: its three split files over ``classes`` of its 1,000; class c has 4 + 4c
    training images (4, 8, 12, 16: few; 20: medium)."""
    rng = np.random.default_rng(0)
    lines = {"train": [], "val": [], "test": []}
    for c in classes:
        for split, n in (("train", 4 + 4 * c), ("val", 1), ("test", 2)):
            for i in range(n):
                rel = f"{split}/n{c:08d}/{i}.JPEG"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / rel, format="JPEG")
                lines[split].append(f"{rel} {c}")
    for split, rows in lines.items():
        (root / f"ImageNet_LT_{split}.txt").write_text("\n".join(rows) + "\n")
    return root


def test_a_fraction_of_a_fixed_class_count_is_refused_unless_allowed(capsys, store, tmp_path):
    root = _imagenet_lt(tmp_path / "imagenet")
    one_line_error(capsys, store, "run", "--headless", "--dataset", "imagenet-lt", "--data-root", str(root),
                   match="covers 5 of the dataset's 1000 classes")
    spec = config.resolve("imagenet-lt", "tiny-clip", "ce", data_root=str(root),
                          overrides=config.parse_sets(["data.allow_missing_classes=true"]))
    from lvmbench.data.summary import class_summary

    assert class_summary(build_dataset(spec)) == {"classes.total": 1000, "classes.with_train": 5,
                                                  "classes.many": 0, "classes.medium": 1, "classes.few": 999}


def test_the_class_summary_is_in_the_spec_log_and_summary_and_val_can_be_none(capsys, store, tmp_path):
    from .conftest import TINY

    root = _imagenet_lt(tmp_path / "imagenet")
    code, out, err = lvmbench(capsys, "run", "--headless", "--dataset", "imagenet-lt", "--data-root", str(root),
                              "--method", "linear_probe", "--set", *TINY, "data.allow_missing_classes=true",
                              "data.val_list=none")
    assert code == 0, out + err
    said = "1000 classes (5 with training images): many 0, medium 1, few 999"
    assert said in err and f"data: {said}" in out  # the warning before, the summary after
    run = next(store[1].iterdir())
    spec = json.loads((run / "spec.json").read_text())
    assert (spec["classes.total"], spec["classes.with_train"], spec["classes.medium"]) == (1000, 5, 1)
    log = (run / "stdout.log").read_text()
    assert f"data: {said}" in log and "the final weights are evaluated (no split to select them on)" in log
    assert not (run / "eval" / "val.json").exists() and (run / "eval" / "test.json").exists()
    test_line = next(line for line in log.splitlines() if line.startswith("test: "))
    assert "None" not in log and all(len(v.split(".")[-1]) == 2 for v in test_line.split()[2::2] if v != "-")


# -- messages that name their file -------------------------------------------------------------------
def _places_root(root, names: str | None):
    root.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "a.jpg")
    for split in ("train", "val", "test"):
        (root / f"Places_LT_{split}.txt").write_text("".join(f"a.jpg {c}\n" for c in range(365)))
    if names is not None:
        (root / "categories_places365.txt").write_text(names)
    return root


def test_a_class_names_mismatch_names_the_file(tmp_path):
    root = _places_root(tmp_path / "places", "/a/airfield 0\n/a/alley 1\n/b/bakery 2\n")
    with pytest.raises(UserError, match=rf"3 class names for 365 classes \(classes from "
                                        rf"{root / 'categories_places365.txt'}: 3 names\)"):
        build_dataset(config.resolve("places-lt", "tiny-clip", "ce", data_root=str(root)))


def test_zeroshot_without_class_names_says_which_files_the_dataset_looks_for(capsys, store, tmp_path):
    root = _places_root(tmp_path / "places", None)
    one_line_error(capsys, store, "run", "--headless", "--dataset", "places-lt", "--data-root", str(root),
                   "--method", "zeroshot",
                   match=f"zeroshot needs class names and dataset places-lt has none: put "
                         f"categories_places365.txt or classnames.txt in {root}, or --set data.classnames=FILE")
