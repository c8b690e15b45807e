"""What a run's training process does to images on the run's device, and ``data.decode=cuda``.

Every image a run reads goes through :meth:`lvmbench.train.loop.Trainer.loader`, which builds
:func:`image_batches`: training views (``cache.mode=eval`` and ``off``), evaluation, the feature cache's
build and test-time ensembling's crops. With ``data.decode=pil`` (the study's path) the loader's workers do
everything, as the study's code did. On the tensor paths the run's pipeline is split where its uint8 work
ends (:func:`lvmbench.data.transforms.split_float`): the batch crosses to the device as uint8 (a quarter
of float32's bytes, pinned on a GPU) and :class:`FloatOnDevice` converts it to float and normalises it
there, the pipeline's own last steps on the whole batch (elementwise: on the CPU bit for bit what each
worker computed before).

``data.decode=cuda``: the loader's workers only read each image's file bytes (with its label, index and
augmentation seed); the training process decodes a whole batch at once with
``torchvision.io.decode_jpeg(..., device=...)`` (batched nvJPEG on CUDA; libjpeg-turbo when the device is
the CPU, as the tests run it) and applies the uint8 part of the run's ``transforms.v2`` pipeline to each
image on the device, its crop and flip drawn from the CPU generator seeded exactly as
:class:`~lvmbench.train.batches.ImageDataset` seeds it, so a seeded item gets the same crop box and flip as
on the other paths. Compressed bytes cross the bus, not pixels. A file that is not a JPEG (PNG, BMP…) and a
JPEG the device rejects (CMYK, broken) are decoded on the CPU (:func:`lvmbench.data.base.decode_bytes`) and
moved as uint8; an in-memory image (mnist-lt, CIFAR) comes from the worker as its uint8 tensor.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ..data.base import decode_bytes
from ..data.transforms import split_float
from ..errors import UserError
from .batches import ImageDataset, collate, seeded

JPEG_MAGIC = (0xFF, 0xD8, 0xFF)


def decode_device(decode: str, device: torch.device) -> torch.device | None:
    """Where a run's images are decoded: the run's device with ``data.decode=cuda`` (refused, one line,
    on any other device), None for the CPU paths (the loader's workers decode)."""
    if decode != "cuda":
        return None
    if device.type != "cuda":
        raise UserError(f"data.decode=cuda decodes on the GPU, but this run trains on {device.type}: "
                        f"use data.decode=torchvision or pil on a CPU")
    return device


class EncodedBatch(NamedTuple):
    """A loader batch before decoding: each image's bytes (or in-memory uint8 image), label, index, seed."""

    payloads: list
    labels: list
    index: list
    seeds: list


class EncodedImages(ImageDataset):
    """``(bytes, label, index, seed)`` per item (an index or ``(index, seed)``): what a worker hands over.
    A missing file is reported or raised here, as :class:`ImageDataset` does; a bad one when decoded."""

    def __init__(self, split, on_bad=None):
        super().__init__(split, transform=None, on_bad=on_bad, decode="cuda")

    def __getitem__(self, item):
        i, seed = item if isinstance(item, tuple) else (item, None)
        payload = self.read(i)
        return None if payload is None else (payload, int(self.split.labels[i]), i, seed)


def collate_encoded(items) -> EncodedBatch:
    """The items a worker read (those skipped left out), as one :class:`EncodedBatch`."""
    kept = [item for item in items if item is not None]
    return EncodedBatch(*(list(column) for column in zip(*kept))) if kept else EncodedBatch([], [], [], [])


def is_jpeg(payload: torch.Tensor) -> bool:
    return payload.ndim == 1 and len(payload) >= 3 and tuple(payload[:3].tolist()) == JPEG_MAGIC


def decode_all(payloads: list, device) -> list:
    """Each payload as an RGB uint8 ``[3, H, W]`` tensor on ``device``, or the exception that stopped it:
    the JPEGs in one batched ``decode_jpeg`` call, the rest (and every JPEG of a batch the call rejects,
    one bad file failing the whole call) on the CPU."""
    from torchvision.io import ImageReadMode, decode_jpeg

    out: list = [None] * len(payloads)
    jpegs = [k for k, p in enumerate(payloads) if is_jpeg(p)]
    if jpegs:
        if torch.device(device).type == "cuda":
            # torchvision allocates the outputs on the caller's stream but has nvJPEG write them from a stream of
            # its own that does not wait for the caller's: a block freed while queued kernels still read it can be
            # overwritten. Draining the caller's stream first avoids it (pytorch/vision PR 9606, the same fix in
            # meta-pytorch/torchcodec PR 1634).
            torch.cuda.current_stream(device).synchronize()
        try:
            decoded = decode_jpeg([payloads[k] for k in jpegs], mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            decoded = [None] * len(jpegs)  # each one on the CPU decides
        for k, image in zip(jpegs, decoded):
            out[k] = image
    for k, payload in enumerate(payloads):
        if out[k] is not None:
            continue
        try:
            image = payload if payload.ndim == 3 else decode_bytes(payload)
            out[k] = image.to(device, non_blocking=True)
        except (OSError, ValueError, RuntimeError) as exc:
            out[k] = exc
    return out


def decode_batch(batch: EncodedBatch, dataset: EncodedImages, transform, device):
    """``(images, labels, index)`` of a batch, the images decoded and transformed on ``device``, each
    under its item's seed: what :func:`~lvmbench.train.batches.collate` gives on the CPU paths. An image
    that cannot be decoded is reported to the dataset's ``on_bad`` and left out (an error without one)."""
    items = []
    for image, label, i, seed in zip(decode_all(batch.payloads, device), *batch[1:]):
        if isinstance(image, Exception):
            dataset.skip(i, dataset.split.bad(i, image))
            continue
        items.append((seeded(transform, image, seed), label, i))
    return collate(items)


class DeviceBatches:
    """A DataLoader of :class:`EncodedImages` whose batches come out decoded and transformed on ``device``."""

    def __init__(self, loader, transform, device):
        self.loader, self.transform, self.device = loader, transform, device

    def __iter__(self):
        for batch in self.loader:
            yield decode_batch(batch, self.loader.dataset, self.transform, self.device)

    def __len__(self) -> int:
        return len(self.loader)


def device_batches(split, transform, device, on_bad=None, **loader_kwargs) -> DeviceBatches:
    """The batches of ``split`` (``loader_kwargs``: the DataLoader's, its sampler or batch size
    included) decoded on ``device``."""
    from torch.utils.data import DataLoader

    loader = DataLoader(EncodedImages(split, on_bad), collate_fn=collate_encoded, **loader_kwargs)
    return DeviceBatches(loader, transform, device)


class FloatOnDevice:
    """Batches of uint8 images (``(images, labels, index)``) whose images move to ``device`` and are made
    float and normalised there by ``to_float``, the float part of the run's pipeline."""

    def __init__(self, batches, to_float, device):
        self.batches, self.to_float, self.device = batches, to_float, device

    def __iter__(self):
        for images, labels, index in self.batches:
            yield self.to_float(images.to(self.device, non_blocking=True)), labels, index

    def __len__(self) -> int:
        return len(self.batches)


def image_batches(split, transform, decode: str, device, on_bad=None, **loader_kwargs):
    """The ``(images, labels, index)`` batches of ``split`` through ``transform`` as ``data.decode`` reads
    them (``loader_kwargs``: the DataLoader's): float and normalised, on ``device`` on the tensor paths (on
    the CPU with ``pil``, whose workers do all the work)."""
    from torch.utils.data import DataLoader

    if decode == "pil":
        return DataLoader(ImageDataset(split, transform, on_bad=on_bad), collate_fn=collate, **loader_kwargs)
    uint8, to_float = split_float(transform)
    if decode == "cuda":
        batches = device_batches(split, uint8, device, on_bad, **loader_kwargs)
    else:
        batches = DataLoader(ImageDataset(split, uint8, on_bad=on_bad, decode=decode), collate_fn=collate,
                             **loader_kwargs)
    return FloatOnDevice(batches, to_float, device)
