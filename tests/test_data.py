import pickle

import numpy as np
import pytest
from PIL import Image

from lvmbench import config
from lvmbench.data import build_dataset
from lvmbench.data.base import longtail_indices
from lvmbench.errors import UserError
from lvmbench.evaluate import shot_groups


def test_mnist_lt_splits():
    ds = build_dataset(config.resolve("mnist-lt", "tiny-clip", "ce"))
    counts = ds.train_counts
    # Exponential profile from 700 down to 700/100, class 0 largest.
    assert counts[0] == 700 and counts[-1] == 7 and np.all(np.diff(counts) < 0)
    assert counts.max() / counts.min() == pytest.approx(100, rel=0.01)
    groups = shot_groups(counts)
    assert {"many", "medium", "few"} == set(groups)
    assert np.array_equal(np.bincount(ds.test.labels), np.full(10, 100))
    assert np.array_equal(np.bincount(ds.val.labels), np.full(10, 30))
    assert ds.class_names[7] == "seven"


def test_mnist_lt_is_deterministic_and_disjoint():
    spec = config.resolve("mnist-lt", "tiny-clip", "ce")
    a, b = build_dataset(spec), build_dataset(spec)
    assert np.array_equal(a.train.samples, b.train.samples) and np.array_equal(a.train.labels, b.train.labels)
    flat = {s.tobytes() for s in a.test.samples}
    assert not any(s.tobytes() in flat for s in a.train.samples[:200])


def test_imbalance_ratio_is_configurable():
    spec = config.resolve("mnist-lt", "tiny-clip", "ce", overrides={"data.imbalance_ratio": 10.0})
    counts = build_dataset(spec).train_counts
    assert counts[0] == 700 and counts[-1] == 70


def test_longtail_profile():
    labels = np.repeat(np.arange(5), 100)
    keep = longtail_indices(labels, 10.0, np.random.default_rng(0))
    # n_c = 100 * 10^(-c/4): 100, 56, 31, 17, 10
    assert np.bincount(labels[keep]).tolist() == [100, 56, 31, 17, 10]


def _split_spec(root, **data):
    overrides = {f"data.{k}": v for k, v in data.items()}
    return config.resolve("split-file", "tiny-clip", "ce", data_root=str(root), overrides=overrides)


def _write_images(root, n=3):
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(root / f"img{i}.png")


def test_split_file_dataset(tmp_path):
    _write_images(tmp_path)
    (tmp_path / "train.txt").write_text("img0.png 0\nimg1.png 1\n\nimg2.png 1\n")
    (tmp_path / "test.txt").write_text("img0.png 0\nimg1.png 1\n")
    (tmp_path / "names.txt").write_text("cat\ndog\n")
    ds = build_dataset(_split_spec(tmp_path, train_list="train.txt", test_list="test.txt", classnames="names.txt"))
    assert ds.num_classes == 2 and ds.train_counts.tolist() == [1, 2] and ds.class_names == ["cat", "dog"]
    assert ds.train.load(2).size == (8, 8) and ds.val is None


def test_split_file_errors_name_file_and_line(tmp_path):
    (tmp_path / "train.txt").write_text("a.png 0\nbroken-line\n")
    (tmp_path / "test.txt").write_text("a.png 0\n")
    with pytest.raises(UserError, match=r"train.txt:2: expected 'relative/path label'"):
        build_dataset(_split_spec(tmp_path, train_list="train.txt", test_list="test.txt"))
    with pytest.raises(UserError, match=r"split file not found: .*nope.txt"):
        build_dataset(_split_spec(tmp_path, train_list="nope.txt", test_list="test.txt"))


def test_label_out_of_range_and_classname_count(tmp_path):
    (tmp_path / "train.txt").write_text("a.png 0\nb.png 5\n")
    (tmp_path / "test.txt").write_text("a.png 0\n")
    (tmp_path / "names.txt").write_text("a\nb\n")
    with pytest.raises(UserError, match=r"train.txt:2: label 5 outside 0..1"):
        build_dataset(_split_spec(tmp_path, train_list="train.txt", test_list="test.txt", classnames="names.txt"))
    (tmp_path / "names.txt").write_text("a\nb\nc\n")
    (tmp_path / "train.txt").write_text("a.png 0\nb.png 1\n")
    (tmp_path / "a.png").touch()  # listed images must exist (their decoding is checked when read)
    (tmp_path / "b.png").touch()
    ds = build_dataset(_split_spec(tmp_path, train_list="train.txt", test_list="test.txt", classnames="names.txt"))
    assert ds.num_classes == 3  # class names define the classes when given


def test_imagenet_lt_needs_its_files(tmp_path):
    spec = config.resolve("imagenet-lt", "tiny-clip", "ce", data_root=str(tmp_path))
    with pytest.raises(UserError, match=r"split file not found: .*ImageNet_LT_train.txt"):
        build_dataset(spec)
    with pytest.raises(UserError, match="needs --data-root"):
        build_dataset(config.resolve("imagenet-lt", "tiny-clip", "ce"))


def test_missing_image_names_the_line(tmp_path):
    (tmp_path / "train.txt").write_text("gone.png 0\n")
    (tmp_path / "test.txt").write_text("gone.png 0\n")
    with pytest.raises(UserError, match=r"image file missing: .*gone.png \(listed at .*train.txt:1\)"):
        build_dataset(_split_spec(tmp_path, train_list="train.txt", test_list="test.txt"))


def test_cifar10_lt(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = np.repeat(np.arange(10), 20).tolist()
        data = rng.integers(0, 255, (200, 3072), dtype=np.uint8)
        (base / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels}))
    (base / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))
    ds = build_dataset(config.resolve("cifar10-lt", "tiny-clip", "ce", data_root=str(tmp_path)))
    assert ds.train_counts[0] == 100 and ds.train_counts[-1] == 1  # 100 per class, ratio 100
    assert len(ds.test) == 200 and ds.train.load(0).size == (32, 32)


def test_folder_dataset(tmp_path):
    for split in ("train", "test"):
        for cls in ("ant", "bee"):
            (tmp_path / split / cls).mkdir(parents=True)
            _write_images(tmp_path / split / cls, 2)
    ds = build_dataset(config.resolve("folder", "tiny-clip", "ce", data_root=str(tmp_path)))
    assert ds.class_names == ["ant", "bee"] and ds.train_counts.tolist() == [2, 2] and len(ds.test) == 4
