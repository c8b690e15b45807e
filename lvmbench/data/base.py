"""One small interface for every dataset: samples, labels, class names, per-class train counts."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import UserError


@dataclass
class Split:
    """The samples of one split and their integer labels.

    ``samples`` holds either relative image paths (read under ``root``) or an in-memory uint8
    array of images ``[N, H, W]`` / ``[N, H, W, 3]``.
    """

    samples: Sequence | np.ndarray
    labels: np.ndarray
    root: Path | None = None
    where: list[str] = field(default_factory=list)  # "file:line" of each sample, for error messages

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> "Split":
        """The samples at positions ``idx``, in that order."""
        samples = self.samples[idx] if isinstance(self.samples, np.ndarray) else [self.samples[i] for i in idx]
        return Split(samples, self.labels[idx], self.root, [self.where[i] for i in idx] if self.where else [])

    def load(self, i: int, decode: str = "pil"):
        """Sample ``i`` as an RGB PIL image (``decode="pil"``), an RGB uint8 tensor ``[3, H, W]``
        decoded by ``torchvision.io.decode_image`` (libjpeg-turbo for JPEGs; ``"torchvision"``), or
        (``"cuda"``) its file's bytes as a 1-D uint8 tensor, left for the run's device to decode
        (:mod:`lvmbench.train.device_decode`; an in-memory image comes as the uint8 tensor)."""
        item = self.samples[i]
        if isinstance(self.samples, np.ndarray):
            return _array_image(item, decode)
        path = self.path(i)
        if not path.exists():
            raise MissingImage(f"image file missing: {self.describe(i)}")
        try:
            if decode == "cuda":
                from torchvision.io import read_file

                return read_file(str(path))
            return _decode_file(path, decode)
        except (OSError, ValueError, RuntimeError) as exc:
            raise self.bad(i, exc) from None

    def bad(self, i: int, exc: Exception) -> "BadImage":
        """The error of sample ``i``'s image that cannot be decoded."""
        return BadImage(f"cannot decode image {self.describe(i)}: {exc}")

    def path(self, i: int) -> Path:
        return self.root / self.samples[i] if self.root else Path(self.samples[i])

    def describe(self, i: int) -> str:
        """Sample ``i``'s file and, when a split file lists it, where: for error messages."""
        return f"{self.path(i)}" + (f" (listed at {self.where[i]})" if self.where else "")


def _array_image(item: np.ndarray, decode: str):
    """An in-memory ``[H, W]`` or ``[H, W, 3]`` uint8 image as RGB."""
    if decode == "pil":
        from PIL import Image

        return Image.fromarray(item).convert("RGB")
    import torch

    image = torch.from_numpy(np.ascontiguousarray(item))
    return image.expand(3, *image.shape) if image.ndim == 2 else image.permute(2, 0, 1)


def _decode_file(path: Path, decode: str):
    """A file as RGB: a PIL image, or (torchvision's decoders) a uint8 tensor."""
    if decode == "pil":
        from PIL import Image

        with Image.open(path) as img:
            return img.convert("RGB")
    from torchvision.io import read_file

    return decode_bytes(read_file(str(path)))


def decode_bytes(data):
    """An image file's bytes (1-D uint8 tensor) as an RGB uint8 tensor ``[3, H, W]``: torchvision's
    decoders (libjpeg-turbo for JPEGs), or PIL for a format they lack (BMP, TIFF…) or a file they reject."""
    import io

    import torch
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_image

    try:
        return decode_image(data, mode=ImageReadMode.RGB)
    except RuntimeError:
        pass  # not a format torchvision decodes, or broken: PIL decides
    with Image.open(io.BytesIO(data.numpy().tobytes())) as img:
        image = img.convert("RGB")
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


class BadImage(UserError):
    """An image that exists but cannot be decoded."""


class MissingImage(UserError):
    """An image file that a split lists but that is not there."""


@dataclass
class LTDataset:
    """A long-tailed classification dataset: train / val (optional) / test splits."""

    name: str
    num_classes: int
    train: Split
    test: Split
    val: Split | None = None
    class_names: list[str] | None = None
    crop_scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop's area range for training views
    skipped: list[dict] = field(default_factory=list)  # listed images dropped by data.on_bad_image=skip
    names_from: str = ""  # the file the class names were read from, for error messages
    names_hint: str = "--set data.classnames=FILE (one name per line, line i = class i)"  # where names would come from

    @property
    def train_counts(self) -> np.ndarray:
        return np.bincount(self.train.labels, minlength=self.num_classes)

    def split(self, name: str) -> Split:
        found = {"train": self.train, "val": self.val, "test": self.test}.get(name)
        if found is None:
            raise UserError(f"dataset {self.name} has no {name} split")
        return found

    def require_class_names(self, why: str) -> list[str]:
        """The class names, or one clear error saying who needs them and how to provide them."""
        if not self.class_names:
            raise UserError(f"{why} needs class names and dataset {self.name} has none: {self.names_hint}")
        return self.class_names

    def _names_source(self) -> str:
        """`` (classes from FILE: N names)``, when the class names come from a file."""
        return f" (classes from {self.names_from}: {len(self.class_names or [])} names)" if self.names_from else ""

    def check_coverage(self, allow: bool, files: str) -> "LTDataset":
        """A dataset with a fixed class count whose training split lacks classes is refused (a wrong root or
        split file, most often), unless ``allow`` (``data.allow_missing_classes=true``)."""
        covered = int((self.train_counts > 0).sum())
        if covered < self.num_classes and not allow:
            raise UserError(f"{self.name}: the training split ({files}) covers {covered} of the dataset's "
                            f"{self.num_classes} classes; check --data-root and the data.*_list files, or "
                            f"--set data.allow_missing_classes=true to run on them anyway")
        return self

    def check(self) -> "LTDataset":
        """Labels in range, class-name count matching: fail with one clear line."""
        for split_name in ("train", "val", "test"):
            split = getattr(self, split_name)
            if split is None or not len(split):
                continue
            bad = np.flatnonzero((split.labels < 0) | (split.labels >= self.num_classes))
            if bad.size:
                i = int(bad[0])
                where = split.where[i] if split.where else f"{split_name} sample {i}"
                raise UserError(f"{where}: label {int(split.labels[i])} outside 0..{self.num_classes - 1}"
                                + self._names_source())
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise UserError(f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes"
                            + self._names_source())
        return self


def longtail_indices(labels: np.ndarray, imbalance_ratio: float, rng: np.random.Generator,
                     max_per_class: int | None = None) -> np.ndarray:
    """Subsample ``labels`` to an exponential profile n_c = n_max * ratio^(-c/(C-1)).

    Class 0 keeps ``max_per_class`` (default: its count); the usual CIFAR-LT construction
    (Cao et al. 2019).
    """
    classes = np.unique(labels)
    counts = np.bincount(labels)
    n_max = max_per_class or int(counts[classes].min())
    keep = []
    for rank, c in enumerate(classes):
        n_c = int(n_max * imbalance_ratio ** (-rank / max(len(classes) - 1, 1)))
        pool = np.flatnonzero(labels == c)
        keep.append(rng.choice(pool, size=min(max(n_c, 1), len(pool)), replace=False))
    return np.sort(np.concatenate(keep))


def few_shot_indices(labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """``shots`` samples per class (all of a class with fewer), drawn by a fixed seed: CoOp's few-shot splits."""
    rng = np.random.default_rng([seed, shots])
    keep = [rng.permutation(np.flatnonzero(labels == c))[:shots] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def require_path(path: Path, what: str) -> Path:
    if not path.exists():
        raise UserError(f"{what} not found: {path}")
    return path


Builder = Callable[..., LTDataset]
