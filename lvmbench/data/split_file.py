"""Datasets described by split files of ``relative/path label`` lines (ImageNet-LT, Places-LT, iNat18, any)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..config import NO_FILE
from ..errors import UserError
from .base import LTDataset, Split, require_path

# name: (num_classes or None, train file, val file or None, test file)
LAYOUTS = {
    "imagenet-lt": (1000, "ImageNet_LT_train.txt", "ImageNet_LT_val.txt", "ImageNet_LT_test.txt"),
    "places-lt": (365, "Places_LT_train.txt", "Places_LT_val.txt", "Places_LT_test.txt"),
    # iNaturalist 2018 has no separate test set: its val list is the test split, as in the literature.
    "inat18": (8142, "iNaturalist18_train.txt", None, "iNaturalist18_val.txt"),
    "split-file": (None, None, None, None),
}


def read_split(path: Path, root: Path) -> Split:
    """Parse a split file; a line that does not parse fails naming the file and line number."""
    samples, labels, where = [], [], []
    with open(require_path(path, "split file")) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise UserError(f"{path}:{lineno}: expected 'relative/path label', got '{line[:80]}'")
            samples.append(parts[0])
            labels.append(int(parts[1]))
            where.append(f"{path}:{lineno}")
    return Split(samples, np.asarray(labels, dtype=np.int64), root=root, where=where)


CATEGORIES_JSON = 'iNaturalist\'s categories.json: a list of {"id": <int>, "name": <str>, ...}'


def read_categories_json(path: Path) -> list[str]:
    """Class names from an iNaturalist ``categories.json`` (class i = id i), or one clear error naming the file."""
    try:
        cats = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); expected {CATEGORIES_JSON}") from None
    if not isinstance(cats, list) or not cats:
        raise UserError(f"{path}: found {type(cats).__name__ if cats else 'nothing'}; expected {CATEGORIES_JSON}")
    for i, c in enumerate(cats):
        if not (isinstance(c, dict) and isinstance(c.get("id"), int) and isinstance(c.get("name"), str)):
            raise UserError(f"{path}: entry {i} is {json.dumps(c)[:80]}; expected {CATEGORIES_JSON}")
    ids = sorted(c["id"] for c in cats)
    if ids != list(range(len(cats))):
        raise UserError(f"{path}: ids are not 0..{len(cats) - 1} (each once); expected {CATEGORIES_JSON}")
    return [c["name"] for c in sorted(cats, key=lambda c: c["id"])]


def read_classnames(path: Path) -> list[str]:
    """One class name per line (line i = class i), or an iNaturalist ``categories.json``."""
    require_path(path, "class-names file")
    if path.suffix == ".json":
        return read_categories_json(path)
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    # Places365's categories_places365.txt reads "/a/airfield 0": keep the readable part.
    if names and names[0].startswith("/"):
        names = [n.rsplit(maxsplit=1)[0].split("/", 2)[-1].replace("/", " ").replace("_", " ") for n in names]
    return names


def load(name: str, data_root: str | None, train_list=None, val_list=None, test_list=None,
         classnames=None, allow_missing_classes: bool = False, **_) -> LTDataset:
    if not data_root:
        raise UserError(f"dataset {name} needs --data-root (the folder the split files' paths are relative to)")
    root = require_path(Path(data_root).expanduser(), "data root")
    num_classes, train_f, val_f, test_f = LAYOUTS[name]
    train_f, test_f = train_list or train_f, test_list or test_f
    val_f = None if val_list == NO_FILE else (val_list or val_f)  # none: no validation split
    if train_f is None or test_f is None:
        raise UserError(f"dataset {name} needs --set data.train_list=FILE data.test_list=FILE")

    def path(f):
        return Path(f) if Path(f).is_absolute() else root / f

    train, test = read_split(path(train_f), root), read_split(path(test_f), root)
    val = read_split(path(val_f), root) if val_f else None
    names, names_from = _class_names(name, root, classnames and path(classnames))
    fixed = num_classes is not None
    if not fixed:
        num_classes = len(names) if names else 1 + max(int(s.labels.max()) for s in (train, val, test) if s and len(s))
    hint = f"put {' or '.join(NAME_FILES.get(name, NAME_FILES['split-file']))} in {root}, or --set data.classnames=FILE (one name per line, line i = class i)"
    dataset = LTDataset(name, num_classes, train=train, val=val, test=test, class_names=names,
                        names_from=names_from, names_hint=hint).check()
    return dataset.check_coverage(allow_missing_classes or not fixed, str(path(train_f)))


# The class-names files a dataset looks for in its root (imagenet-lt has open_clip's names).
NAME_FILES = {"places-lt": ["categories_places365.txt", "classnames.txt"],
              "inat18": ["categories.json", "classnames.txt"], "split-file": ["classnames.txt"]}


def _class_names(name: str, root: Path, explicit: Path | None) -> tuple[list[str] | None, str]:
    """The class names and where they come from: ``data.classnames``, a file in the root, open_clip."""
    if explicit:
        return read_classnames(explicit), str(explicit)
    if name == "imagenet-lt":
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        return list(IMAGENET_CLASSNAMES), "open_clip's ImageNet class names"
    for candidate in NAME_FILES.get(name, NAME_FILES["split-file"]):
        if (root / candidate).exists():
            return read_classnames(root / candidate), str(root / candidate)
    return None, ""


def load_checked(name: str, on_bad_image: str = "fail", **kwargs) -> LTDataset:
    """:func:`load`, then every listed image checked to exist (``data.on_bad_image``: fail or skip)."""
    from .checks import check_listed_images

    return check_listed_images(load(name, **kwargs), on_bad_image)
