"""The study's image transforms (Imbalance-VLM, ``imblearn/datasets/cv_datasets/*.py``), for ``data.transform=study``,
and LIFT's (shijxcs/LIFT ``trainer.py``, ``build_data_loader``), for ``data.transform=lift``.

Training: a random resized crop (area 8-100 %, bilinear, as timm's ``RandomResizedCropAndInterpolation``
does by default), a horizontal flip, then normalisation with ImageNet's statistics (iNaturalist 2018: its
own). Evaluation: resize the short side to 256/224 of the crop, bilinear, then a centre crop. Not CLIP's
preprocessing: CLIP's own statistics and bicubic resizing are ``data.transform=open_clip``.
"""
from __future__ import annotations

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# The study's RGB_statistics per dataset; every other dataset gets its 'default' (ImageNet's).
STATS = {"inat18": ((0.466, 0.471, 0.380), (0.195, 0.194, 0.192))}


def study_transforms(dataset: str, size: int, train: bool, hflip: bool = True,
                     crop_scale: tuple[float, float] = (0.08, 1.0)):
    from torchvision import transforms as T

    mean, std = STATS.get(dataset, (IMAGENET_MEAN, IMAGENET_STD))
    bilinear = T.InterpolationMode.BILINEAR
    if train:
        head = [T.RandomResizedCrop(size, scale=crop_scale, interpolation=bilinear)]
        head += [T.RandomHorizontalFlip()] if hflip else []
    else:
        head = [T.Resize(round(size * 256 / 224), interpolation=bilinear), T.CenterCrop(size)]
    return T.Compose([*head, T.ToTensor(), T.Normalize(mean, std)])


def lift_transforms(size: int, train: bool, mean, std, hflip: bool = True,
                    crop_scale: tuple[float, float] = (0.08, 1.0)):
    """LIFT's ``transform_train`` and (without test-time ensembling) ``transform_test``: torchvision's default
    interpolation (bilinear) throughout; training a random resized crop and a flip, evaluation a resize of the
    short side to ``size * 8 // 7`` (256 for 224) and a centre crop; the backbone's mean and std (CLIP's)."""
    from torchvision import transforms as T

    if train:
        head = [T.RandomResizedCrop(size, scale=crop_scale)] + ([T.RandomHorizontalFlip()] if hflip else [])
    else:
        head = [T.Resize(size * 8 // 7), T.CenterCrop(size)]
    return T.Compose([*head, T.ToTensor(), T.Normalize(mean, std)])
