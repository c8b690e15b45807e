"""``lvmbench bench --loader``: how many images a CPU core decodes and augments per second, on each
path, and whether that or the GPU's tower bounds a training step.

It writes realistic JPEGs to a temporary folder (ImageNet's typical sizes, around 500 x 375, quality
90, smooth content with texture and noise), then reads them the way a training run does
(:class:`lvmbench.train.batches.ImageDataset` with seeded augmentation): for each ``data.transform``
(the study's, open_clip's) and each ``data.decode`` (``pil``, the study's path, whose workers do all the
work; ``torchvision``, the fast path, whose workers stop at uint8 views and leave the float conversion and
normalisation to the run's device), one process on one thread, round-robin so that a load that drifts slows every path
alike, and then with the loader's worker processes; beside them, decoding alone on each path (its
floor, and the ceiling of any CPU path: PIL's full path over torchvision's decoding alone), the float
conversion and normalisation alone and the fast path as it was with them on the CPU (before they moved to
the device), and the CPU side of ``data.decode=cuda`` (reading bytes, collating), and on a CUDA machine that path's
decoding and transforms on the GPU. Images per core are counted per second of the
process's CPU time, which a busy machine does not shrink the way it shrinks wall-clock rates (both
are reported). It compares the fast path's output with
PIL's on the same crops, in levels of 255, and predicts for ViT-B/16 and ViT-L/14 on a GPU the
tower's images per second by FLOPs (forward pass at ``UTILISATION`` of the GPU's dense bf16 peak)
against what the loader supplies with the machine's cores.
"""
from __future__ import annotations

import functools
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data.base import Split
from ..data.transforms import (DECODES, IMAGENET_MEAN, IMAGENET_STD, open_clip_transforms, split_float,
                               study_transforms)
from ..errors import UserError, unknown
from ..train.loader import data_workers, loader_options, usable_cores

SIZES = [(500, 375), (500, 333), (375, 500), (500, 400), (500, 500), (333, 500), (640, 480), (500, 281)]
QUALITY = 90
CROP = 224
TRANSFORMS = ("study", "open_clip")
# Stages timed beside the full paths (timed_paths): decoding alone, the GPU path's reading, the fast path's float
# conversion and normalisation alone, and the fast path with them on the CPU (as before they moved to the device).
DECODE_ONLY, READ_ONLY, FLOAT_ONLY, FLOAT_ON_CPU = "decode only", "read bytes", "float only", "float on the CPU"
GPU_BATCH = 64  # images per batched decode_jpeg call when the bench times the GPU path
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)  # open_clip's
BACKBONES = ("ViT-B-16", "ViT-L-14")
UTILISATION = 0.5  # of the dense bf16 peak that a tower's forward pass sustains
# Dense bf16 tensor-core peak (TFLOP/s, no sparsity) from the vendors' data sheets, by device name.
TARGETS = {"h100": ("H100", 989.4), "h200": ("H200", 989.4), "a100": ("A100", 312.0), "l40s": ("L40S", 362.1),
           "rtx4090": ("RTX 4090", 165.2)}


def make_images(folder: Path, n: int, seed: int = 0) -> Split:
    """``n`` JPEGs of ImageNet-like sizes and content: large smooth shapes, mid-scale texture and sensor
    noise, so that they compress (and decode) like photographs rather than flat colour or pure noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        w, h = SIZES[i % len(SIZES)]
        image = np.zeros((h, w, 3), dtype=np.float32)
        for cells, amplitude in ((4, 90.0), (24, 40.0), (96, 18.0)):
            coarse = Image.fromarray(rng.uniform(0, 255, (cells, cells, 3)).astype(np.uint8))
            image += (np.asarray(coarse.resize((w, h), Image.BICUBIC), dtype=np.float32) - 127.5) * amplitude / 127.5
        image += 128.0 + rng.normal(0, 6.0, image.shape)
        name = f"img{i:04d}.jpg"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / name, quality=QUALITY)
        names.append(name)
    return Split(names, np.zeros(n, dtype=np.int64), root=folder)


def transform_of(name: str, decode: str, train: bool = True):
    """The training (or evaluation) transform ``data.transform=name`` with ``data.decode=decode`` at 224 px."""
    if name == "study":
        return study_transforms("imagenet-lt", CROP, train, decode=decode)
    return open_clip_transforms(CROP, train, CLIP_MEAN, CLIP_STD, decode=decode)


def _dataset(split: Split, transform: str, decode: str, train: bool = True):
    """What a loader worker runs on ``decode``'s path: the whole transform (PIL), or its uint8 part."""
    from ..train.batches import ImageDataset

    full = transform_of(transform, decode, train)
    return ImageDataset(split, full if decode == "pil" else split_float(full)[0], decode=decode)


def _items(n: int) -> list[tuple[int, int]]:
    return [(i, 1000 + i) for i in range(n)]  # (index, augmentation seed): every path cuts the same crops


def timed_paths(split: Split) -> dict[tuple[str, str], Callable[[], object]]:
    """What :func:`single_process` times, each a function that reads every image once: each full path
    (transform, decode) as a loader worker runs it; decoding alone on each CPU path (``DECODE_ONLY``: PIL's
    open and convert, ``torchvision.io.decode_image``), the floor of its full path; the study's fast path
    with its float conversion and normalisation on the CPU, per image (``FLOAT_ON_CPU``: the workers' work
    before it moved to the device), and those two steps alone on its uint8 views (``FLOAT_ONLY``); and the
    CPU side of ``data.decode=cuda`` (``READ_ONLY``: the workers' reading of the bytes and their collation)."""
    from ..train.batches import ImageDataset
    from ..train.device_decode import EncodedImages, collate_encoded

    items = _items(len(split))
    paths: dict[tuple[str, str], Callable[[], object]] = {}
    for t in TRANSFORMS:
        for d in DECODES:
            paths[(t, d)] = functools.partial(_read_all, _dataset(split, t, d), items)
    for d in DECODES:
        paths[(DECODE_ONLY, d)] = functools.partial(_read_all, _Loaded(split, d), range(len(split)))
    study = transform_of("study", "torchvision")
    before = ImageDataset(split, study, decode="torchvision")
    paths[(FLOAT_ON_CPU, "torchvision")] = functools.partial(_read_all, before, items)
    views = [view for view, _, _ in _read_all(_dataset(split, "study", "torchvision"), items)]
    to_float = split_float(study)[1]
    paths[(FLOAT_ONLY, "torchvision")] = functools.partial(_map, to_float, views)
    encoded = EncodedImages(split)
    paths[(READ_ONLY, "cuda")] = lambda: [collate_encoded([encoded[item] for item in batch])
                                          for batch in _batches(items)]
    return paths


class _Loaded:
    """Sample ``i`` as ``decode`` reads it (decoded, not transformed)."""

    def __init__(self, split: Split, decode: str):
        self.split, self.decode = split, decode

    def __getitem__(self, i: int):
        return self.split.load(i, self.decode)


def _map(function, items) -> list:
    return [function(item) for item in items]


def _read_all(dataset, items) -> list:
    return [dataset[item] for item in items]


def _batches(items: list, batch: int = 32) -> list[list]:
    return [items[i:i + batch] for i in range(0, len(items), batch)]


def single_process(split: Split, rounds: int, log) -> dict[tuple[str, str], dict[str, float]]:
    """Images per second of each of :func:`timed_paths` in this process on one thread, the median over
    ``rounds`` of reading every image once, paths taking turns within a round: ``cpu`` per second of the
    process's CPU time (what a core of its own would do: a busy machine lends it only part of a core)
    and ``wall`` per second of wall-clock time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    paths = timed_paths(split)
    times: dict[tuple[str, str], dict[str, list[float]]] = {key: {"cpu": [], "wall": []} for key in paths}
    try:
        for read in paths.values():  # warm-up: imports, first-call set-up
            read()
        for r in range(rounds):
            for key, read in paths.items():
                cpu, wall = time.process_time(), time.perf_counter()
                read()
                times[key]["cpu"].append(time.process_time() - cpu)
                times[key]["wall"].append(time.perf_counter() - wall)
            log(f"round {r + 1}: " + ", ".join(f"{t}/{d} {len(split) / times[(t, d)]['cpu'][-1]:.0f} img/s"
                                              for t, d in paths))
    finally:
        torch.set_num_threads(threads)
    return {key: {k: len(split) / statistics.median(v) for k, v in ts.items()} for key, ts in times.items()}


def with_workers(split: Split, transform: str, decode: str, workers: int, batch: int = 32) -> float:
    """Images per second through a DataLoader with ``workers`` processes as a training run builds it
    (persistent, prefetching), after one warm-up pass that starts them: what they hand over (on the fast
    path uint8 views, which the run's device then makes float)."""
    from torch.utils.data import DataLoader

    from ..train.batches import collate

    batches = _batches(_items(len(split)), batch)
    loader = DataLoader(_dataset(split, transform, decode), batch_sampler=batches, collate_fn=collate,
                        **loader_options(workers, "cpu"))
    for _ in loader:
        pass
    t0 = time.perf_counter()
    for _ in loader:
        pass
    return len(split) / (time.perf_counter() - t0)


def outputs(split: Split, transform: str, decode: str, train: bool, device: str = "cuda") -> torch.Tensor:
    """The (normalised) views of every image on one path, each image under its own seed, as a run's loader
    gives them (:func:`lvmbench.train.device_decode.image_batches`), brought to the CPU; ``decode="cuda"``
    decodes and transforms on ``device``, the other paths make their views float on the CPU."""
    from ..train.device_decode import image_batches

    on = torch.device(device if decode == "cuda" else "cpu")
    batches = image_batches(split, transform_of(transform, decode, train), decode, on,
                            batch_sampler=_batches(_items(len(split))))
    return torch.cat([images.cpu() for images, _, _ in batches])


def difference(split: Split, transform: str, train: bool, paths: tuple[str, str] = ("pil", "torchvision"),
               device: str = "cuda") -> dict:
    """The second path's output against the first's on the same crops, in levels of 255 (un-normalised):
    by default the fast path against PIL's; ``device``: where the ``cuda`` path decodes."""
    std = torch.tensor(IMAGENET_STD if transform == "study" else CLIP_STD).view(3, 1, 1)
    a, b = (outputs(split, transform, d, train, device) for d in paths)
    diffs = ((a - b) * std * 255).abs()
    return {"transform": transform, "train": train, "paths": list(paths), "mean_abs_255": diffs.mean().item(),
            "p99_abs_255": diffs.flatten().kthvalue(max(1, int(0.99 * diffs.numel()))).values.item(),
            "max_abs_255": diffs.max().item()}


def gpu_rate(split: Split, rounds: int, batch: int = GPU_BATCH, device: str = "cuda") -> float:
    """Images per second that ``device`` decodes and turns into the study's training views
    (``data.decode=cuda``: the uint8 part per image, the float part per batch), the bytes already read: the
    median over ``rounds`` of every image once."""
    from ..train.device_decode import EncodedImages, collate_encoded, decode_batch

    encoded, device = EncodedImages(split), torch.device(device)
    uint8, to_float = split_float(transform_of("study", "cuda"))
    batches = [collate_encoded([encoded[item] for item in b]) for b in _batches(_items(len(split)), batch)]

    def once() -> float:
        t0 = time.perf_counter()
        for b in batches:
            to_float(decode_batch(b, encoded, uint8, device)[0])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    once()  # warm-up: nvJPEG's handles, the kernels
    return len(split) / statistics.median(once() for _ in range(rounds))


def stages(single: dict) -> dict[str, float]:
    """CPU ms per image of each stage of the study's training view on one thread: decoding alone and the
    full path, on PIL's and torchvision's paths (its full path up to the uint8 views, its float conversion
    and normalisation alone, and both on the CPU as before they moved to the device), and the CPU side of the
    GPU path (reading, collating)."""
    def ms(key):
        return 1000 / single[key]["cpu"]

    return {"pil_decode": ms((DECODE_ONLY, "pil")), "pil_full": ms(("study", "pil")),
            "torchvision_decode": ms((DECODE_ONLY, "torchvision")), "torchvision_full": ms(("study", "torchvision")),
            "torchvision_float": ms((FLOAT_ONLY, "torchvision")),
            "torchvision_float_on_cpu": ms((FLOAT_ON_CPU, "torchvision")), "cuda_read_collate": ms((READ_ONLY, "cuda"))}


@functools.lru_cache(maxsize=None)
def tower_gflop(backbone: str) -> float:
    """GFLOP of the tower's forward pass for one image, counted on a model without weights (meta device)."""
    import logging

    import open_clip
    from torch.utils.flop_counter import FlopCounterMode

    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # "no pretrained weights loaded": none are needed
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused attention kernel is invisible to the counter
    try:
        visual = open_clip.create_model(backbone, device="meta").visual
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            visual(torch.zeros(1, 3, CROP, CROP, device="meta"))
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        logging.getLogger().setLevel(quiet)
    return counter.get_total_flops() / 1e9


def resolve_target(target: str | None) -> tuple[str, str, float]:
    """(key, name, dense bf16 TFLOP/s) of ``--target``, or of the CUDA device this runs on (default h100)."""
    if target is None and torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        found = next((k for k, (label, _) in TARGETS.items() if label.lower() in name.lower()), None)
        if found is None:
            raise UserError(f"no bf16 peak known for {name}: give --target, one of {', '.join(TARGETS)}")
        return found, name, TARGETS[found][1]
    key = target or "h100"
    if key not in TARGETS:
        raise unknown("--target", key, TARGETS)
    return key, TARGETS[key][0], TARGETS[key][1]


def predict(per_core: dict[str, float], workers: int, tflops: float) -> list[dict]:
    """Per backbone: the tower's images/s by FLOPs, what ``workers`` loader processes supply on each path,
    which bounds a step, and the cores a path needs to keep the tower fed (its workers plus the main process)."""
    out = []
    for backbone in BACKBONES:
        gflop = tower_gflop(backbone)
        tower = UTILISATION * tflops * 1e12 / (gflop * 1e9)
        row = {"backbone": backbone, "tower_gflop": gflop, "tower_img_s": tower}
        for path, rate in per_core.items():
            row[f"{path}_loader_img_s"] = rate * workers
            row[f"{path}_bound"] = "loader" if rate * workers < tower else "tower"
            row[f"{path}_cores_needed"] = math.ceil(tower / rate) + 1
        out.append(row)
    return out


def run(images: int = 96, rounds: int = 3, target: str | None = None, cores: int | None = None, log=None) -> dict:
    """Measure and predict (see the module's docstring); the JSON report's ``loader`` section."""
    if images < 8 or rounds < 1:
        raise UserError("--loader-images must be >= 8 and --loader-rounds >= 1")
    if cores is not None and cores < 2:
        raise UserError("--cores must be >= 2 (one main process, at least one loader worker)")
    log = log or (lambda text: None)
    key, gpu, tflops = resolve_target(target)
    here = usable_cores()
    workers = data_workers(-1, "cuda") if cores is None else cores - 1
    measured_workers = data_workers(-1, "cuda")  # the workers a GPU run on this machine starts
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lvmbench-loader-") as tmp:
        log(f"writing {images} JPEGs (quality {QUALITY})")
        split = make_images(Path(tmp), images)
        jpeg_kib = sum(os.path.getsize(split.path(i)) for i in range(images)) / images / 1024
        single = single_process(split, rounds, log)
        paths = []
        for t, d in ((t, d) for t in TRANSFORMS for d in DECODES):  # the full paths, not the stages
            rate = single[(t, d)]
            log(f"{t}/{d} with {measured_workers} worker(s)")
            pooled = with_workers(split, t, d, measured_workers)
            paths.append({"transform": t, "decode": d, "img_s_per_core": rate["cpu"], "img_s_wall": rate["wall"],
                          "workers": measured_workers, "workers_img_s": pooled,
                          "workers_img_s_per_core": pooled / measured_workers})
        log("comparing the fast path's output with PIL's")
        diffs = [difference(split, t, train) for t in TRANSFORMS for train in (True, False)]
        ms = stages(single)
        cuda = {"cpu_img_s_per_core": single[(READ_ONLY, "cuda")]["cpu"], "cpu_ms_per_img": ms["cuda_read_collate"],
                "gpu": None, "gpu_batch": GPU_BATCH, "gpu_img_s": None, "difference": None}
        if torch.cuda.is_available():
            log("decoding on the GPU (data.decode=cuda)")
            cuda.update(gpu=torch.cuda.get_device_name(0), gpu_img_s=gpu_rate(split, rounds),
                        difference=[difference(split, t, train, ("torchvision", "cuda")) for t in TRANSFORMS
                                    for train in (True, False)])
    pil, fast = single[("study", "pil")]["cpu"], single[("study", "torchvision")]["cpu"]
    loader = {"images": images, "rounds": rounds, "jpeg_kib": jpeg_kib, "sizes": SIZES, "quality": QUALITY,
              "pil_img_s_per_core": pil, "fast_img_s_per_core": fast, "ratio": fast / pil,
              "ratio_float_on_cpu": ms["pil_full"] / ms["torchvision_float_on_cpu"],
              "stages_ms": ms, "ceiling_ratio": ms["pil_full"] / ms["torchvision_decode"], "cuda": cuda,
              "workers": workers, "measured_workers": measured_workers, "cores": cores or here, "usable_cores": here,
              "paths": paths, "difference": diffs}
    return {"loader": loader, "target": {"key": key, "gpu": gpu, "bf16_tflops": tflops, "utilisation": UTILISATION},
            "towers": predict({"pil": pil, "fast": fast}, workers, tflops), "load_avg": os.getloadavg(),
            "torch": torch.__version__, "wall_s": time.perf_counter() - started}


STAGES = [("PIL: open + convert (decoding alone)", "pil_decode"), ("PIL: full path", "pil_full"),
          ("torchvision: decode_image (decoding alone)", "torchvision_decode"),
          ("torchvision: full path (uint8 views; float on the device)", "torchvision_full"),
          ("torchvision: float + normalise alone (now on the device)", "torchvision_float"),
          ("torchvision: full path with float on the CPU (before)", "torchvision_float_on_cpu"),
          ("GPU path: read bytes + collate (its CPU side)", "cuda_read_collate")]


def _print_differences(diffs: list[dict], label: str) -> None:
    for d in diffs:
        print(f"  {d['transform']:9s} {'train' if d['train'] else 'eval ':5s} {label} in levels of 255: "
              f"mean {d['mean_abs_255']:.2f}, p99 {d['p99_abs_255']:.1f}, max {d['max_abs_255']:.0f}")


def print_report(report: dict, fmt_name: str = "table") -> None:
    """The paths and the prediction as tables (or Markdown), or the report as one JSON object."""
    import json

    from ..render import output, render

    if fmt_name == "json":
        print(json.dumps(report, indent=1))
        return
    lo, tg = report["loader"], report["target"]
    console = output(min_width=100)
    load = " ".join(f"{x:.2f}" for x in report["load_avg"])
    rows = [[p["transform"], p["decode"], round(p["img_s_per_core"]), round(1000 / p["img_s_per_core"], 2),
             round(p["img_s_wall"]), p["workers"], round(p["workers_img_s"])] for p in lo["paths"]]
    render(["transform", "decode", "img/s per core (CPU time)", "CPU ms/img", "img/s (wall)", "workers",
            "img/s with workers (wall)"], rows, fmt_name,
           title=f"{lo['images']} JPEGs (~{lo['jpeg_kib']:.0f} KiB, quality {lo['quality']}), 224 px training "
                 f"views, median of {lo['rounds']} round(s), load average {load}", console=console)
    print(f"\nfast path (torchvision) / PIL, the study's transform: {lo['ratio']:.2f}x per core "
          f"({lo['ratio_float_on_cpu']:.2f}x with the float conversion and normalisation on the CPU, as before)")
    _print_differences(lo["difference"], "|fast - PIL|")
    ms, cuda = lo["stages_ms"], lo["cuda"]
    rows = [[name, round(ms[key], 2), round(1000 / ms[key])] for name, key in STAGES]
    print()
    render(["stage (the study's training view, one thread)", "CPU ms/img", "img/s per core"], rows, fmt_name,
           console=console)
    print(f"\nceiling of a CPU decode path: PIL's full path / torchvision's decoding alone = "
          f"{lo['ceiling_ratio']:.2f}x per core")
    if cuda["gpu_img_s"] is None:
        print("GPU path (data.decode=cuda): decoding and transforming not measured (no CUDA device here)")
    else:
        print(f"GPU path (data.decode=cuda) on {cuda['gpu']}: {cuda['gpu_img_s']:.0f} img/s decoded and "
              f"transformed (batches of {cuda['gpu_batch']})")
        _print_differences(cuda["difference"], "|GPU - torchvision|")
    rows = [[t["backbone"], round(t["tower_gflop"], 1), round(t["tower_img_s"]), round(t["pil_loader_img_s"]),
             t["pil_bound"], t["pil_cores_needed"], round(t["fast_loader_img_s"]), t["fast_bound"],
             t["fast_cores_needed"]] for t in report["towers"]]
    print()
    render(["backbone", "GFLOP", "tower img/s", "PIL img/s", "PIL bound", "PIL cores", "fast img/s", "fast bound",
            "fast cores"], rows, fmt_name, console=console,
           title=f"{tg['gpu']} ({tg['bf16_tflops']:.0f} bf16 TFLOP/s at {tg['utilisation']:.0%}), "
                 f"{lo['workers']} loader workers ({lo['cores']} cores)")
