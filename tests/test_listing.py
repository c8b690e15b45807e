"""The missing-file check remembers a verified listing until the split or one of its folders changes."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from lvmbench.data import checks, listing
from lvmbench.data.base import MissingImage
from lvmbench.data.split_file import read_split

HOUR_AGO = time.time() - 3600


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A data root with folders a/ (2 images) and b/ (1 image), last changed an hour ago; a split file
    listing them; the folders each missing-file check lists (``listed``)."""
    monkeypatch.setenv("LVMBENCH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    for name in ("a/x.jpg", "a/y.jpg", "b/z.jpg"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    for folder in ("a", "b"):
        os.utime(root / folder, (HOUR_AGO, HOUR_AGO))
    (root / "train.txt").write_text("a/x.jpg 0\na/y.jpg 0\nb/z.jpg 1\n")
    listed = []
    real = os.listdir
    monkeypatch.setattr(checks.os, "listdir", lambda path: listed.append(os.path.basename(path)) or real(path))
    return root, listed


def mask(root, lines: str | None = None) -> list[bool]:
    if lines is not None:
        (root / "train.txt").write_text(lines)
    return checks.missing_mask(read_split(root / "train.txt", root)).tolist()


def test_a_second_check_of_the_same_split_lists_no_folder(tree):
    root, listed = tree
    assert mask(root) == [False, False, False] and sorted(listed) == ["a", "b"]
    listed.clear()
    assert mask(root) == [False, False, False] and listed == []  # one stat per folder, nothing listed


def test_a_removed_listed_file_changes_its_folder_and_is_found(tree):
    root, listed = tree
    mask(root)
    (root / "b" / "z.jpg").unlink()
    listed.clear()
    assert mask(root) == [False, False, True] and listed == ["b"]  # only the folder that changed
    split = read_split(root / "train.txt", root)
    from lvmbench.data.base import LTDataset

    with pytest.raises(MissingImage, match=r"b/z.jpg \(listed at .*train.txt:3\); 1 of 3 train images"):
        checks.check_listed_images(LTDataset("d", 2, train=split, test=split), "fail")


def test_a_changed_split_file_is_checked_again(tree):
    root, listed = tree
    mask(root)
    listed.clear()
    assert mask(root, "a/x.jpg 0\na/w.jpg 0\n") == [False, True] and listed == ["a"]


def test_a_folder_changed_moments_before_it_was_listed_is_listed_again(tree):
    root, listed = tree
    (root / "a" / "new.jpg").write_bytes(b"")  # a/ changed just now: its time may not show the next change
    mask(root)
    listed.clear()
    assert mask(root) == [False, False, False] and listed == ["a"]  # b/ is trusted, a/ listed again
    listed.clear()
    os.utime(root / "a", (HOUR_AGO, HOUR_AGO))
    mask(root)
    listed.clear()
    mask(root)
    assert listed == []


def test_an_unreadable_record_is_ignored(tree):
    root, listed = tree
    mask(root)
    for record in (listing.paths.cache_dir() / "listings").iterdir():
        record.write_text("{not json")
    listed.clear()
    assert mask(root) == [False, False, False] and sorted(listed) == ["a", "b"]


def test_in_memory_splits_have_no_files_to_check():
    from lvmbench.data.base import Split

    split = Split(np.zeros((3, 4, 4), np.uint8), np.zeros(3, np.int64))
    assert checks.missing_mask(split).tolist() == [False] * 3
