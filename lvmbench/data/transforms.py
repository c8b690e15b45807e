"""Image transforms: the study's (``data.transform=study``), open_clip's (``data.transform=open_clip``) and
LIFT's (``data.transform=lift``), each on PIL images (``data.decode=pil``) or on uint8 tensors
(``data.decode=torchvision``, and ``cuda`` on the GPU).

The study's (Imbalance-VLM, ``imblearn/datasets/cv_datasets/*.py``): training takes a random resized crop
(area 8-100 %, bilinear, as timm's ``RandomResizedCropAndInterpolation`` does by default), a horizontal
flip, then normalisation with ImageNet's statistics (iNaturalist 2018: its own); evaluation resizes the
short side to 256/224 of the crop, bilinear, then takes a centre crop. open_clip's: the same crops with
CLIP's statistics and bicubic resizing, the evaluation resize to the crop size itself.

``decode=torchvision``: the same operations from ``torchvision.transforms.v2`` on the uint8 tensor that
``torchvision.io.decode_image`` (libjpeg-turbo) returns, converted to float and normalised last; a run
splits such a pipeline where the uint8 work ends (:func:`split_float`): its loader workers hand over
uint8 batches and the float conversion and normalisation run on the run's device. The
random draws are the same (a seeded item gets the same crop box and flip on either path); only the
resampling differs (torchvision's antialiased uint8 kernels against PIL's): ``lvmbench bench --loader``
measures the difference and the speed. ``decode=cuda`` runs the same ``v2`` pipeline on the GPU
(:mod:`lvmbench.train.device_decode`).
"""
from __future__ import annotations

import torch

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# The study's RGB_statistics per dataset; every other dataset gets its 'default' (ImageNet's).
STATS = {"inat18": ((0.466, 0.471, 0.380), (0.195, 0.194, 0.192))}
DECODES = ("pil", "torchvision")


def ops(decode: str):
    """The transforms module of a decode path: ``torchvision.transforms`` (PIL) or its ``v2`` (tensors)."""
    if decode == "pil":
        from torchvision import transforms
    else:
        from torchvision.transforms import v2 as transforms
    return transforms


def to_float(decode: str) -> list:
    """PIL image or uint8 tensor -> float tensor in [0, 1]."""
    T = ops(decode)
    return [T.ToTensor()] if decode == "pil" else [T.ToDtype(torch.float32, scale=True)]


def split_float(transform):
    """A tensor path's pipeline as ``(uint8 part, float part)``: the crops, resize and flip on uint8 tensors,
    then its float conversion and normalisation, the same steps in the same order (from its ``ToDtype`` on).
    A transform that is not a ``v2.Compose`` splits itself (test-time ensembling's crops)."""
    from torchvision.transforms import v2

    if not isinstance(transform, v2.Compose):
        return transform.split_float()
    steps = transform.transforms
    k = next(k for k, step in enumerate(steps) if isinstance(step, v2.ToDtype))
    return v2.Compose(steps[:k]), v2.Compose(steps[k:])


def pipeline(size: int, train: bool, mean, std, interpolation: str, eval_resize: int, hflip: bool = True,
             crop_scale: tuple[float, float] = (0.08, 1.0), decode: str = "pil"):
    """Random resized crop (+ flip) for training, resize then centre crop for evaluation; then float
    and normalisation. ``interpolation``: ``bilinear`` or ``bicubic``."""
    from torchvision.transforms import InterpolationMode

    T, mode = ops(decode), InterpolationMode(interpolation)
    if train:
        head = [T.RandomResizedCrop(size, scale=crop_scale, interpolation=mode)]
        head += [T.RandomHorizontalFlip()] if hflip else []
    else:
        head = [T.Resize(eval_resize, interpolation=mode), T.CenterCrop(size)]
    return T.Compose([*head, *to_float(decode), T.Normalize(mean, std)])


def open_clip_transforms(size: int, train: bool, mean, std, hflip: bool = True,
                         crop_scale: tuple[float, float] = (0.08, 1.0), decode: str = "pil"):
    """The study's crops with open_clip's preprocessing: the backbone's statistics, bicubic, resize to the crop."""
    return pipeline(size, train, mean, std, "bicubic", size, hflip, crop_scale, decode)


def study_transforms(dataset: str, size: int, train: bool, hflip: bool = True,
                     crop_scale: tuple[float, float] = (0.08, 1.0), decode: str = "pil"):
    """The study's transforms for ``dataset`` (its statistics, bilinear, evaluation resize 256/224)."""
    mean, std = STATS.get(dataset, (IMAGENET_MEAN, IMAGENET_STD))
    return pipeline(size, train, mean, std, "bilinear", round(size * 256 / 224), hflip, crop_scale, decode)


def lift_transforms(size: int, train: bool, mean, std, hflip: bool = True,
                    crop_scale: tuple[float, float] = (0.08, 1.0), decode: str = "pil"):
    """LIFT's ``transform_train`` and (without test-time ensembling) ``transform_test`` (shijxcs/LIFT
    ``trainer.py``, ``build_data_loader``): torchvision's default interpolation (bilinear) throughout, the
    evaluation resize to ``size * 8 // 7`` (256 for 224), the backbone's mean and std (CLIP's)."""
    return pipeline(size, train, mean, std, "bilinear", size * 8 // 7, hflip, crop_scale, decode)
