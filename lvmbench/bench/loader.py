"""``lvmbench bench --loader``: how many images a CPU core decodes and augments per second, on each
path, and whether that or the GPU's tower bounds a training step.

It writes realistic JPEGs to a temporary folder (ImageNet's typical sizes, around 500 x 375, quality
90, smooth content with texture and noise), then reads them the way a training run does
(:class:`lvmbench.train.batches.ImageDataset` with seeded augmentation): for each ``data.transform``
(the study's, open_clip's) and each ``data.decode`` (``pil``, the study's path; ``torchvision``,
the fast path), one process on one thread, round-robin so that a load that drifts slows every path
alike, and then with the loader's worker processes. Images per core are counted per second of the
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

import numpy as np
import torch

from ..data.base import Split
from ..data.transforms import DECODES, IMAGENET_MEAN, IMAGENET_STD, open_clip_transforms, study_transforms
from ..errors import UserError, unknown
from ..train.loader import data_workers, loader_options, usable_cores

SIZES = [(500, 375), (500, 333), (375, 500), (500, 400), (500, 500), (333, 500), (640, 480), (500, 281)]
QUALITY = 90
CROP = 224
TRANSFORMS = ("study", "open_clip")
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
    from ..train.batches import ImageDataset

    return ImageDataset(split, transform_of(transform, decode, train), decode=decode)


def _items(n: int) -> list[tuple[int, int]]:
    return [(i, 1000 + i) for i in range(n)]  # (index, augmentation seed): every path cuts the same crops


def single_process(split: Split, rounds: int, log) -> dict[tuple[str, str], dict[str, float]]:
    """Images per second of each (transform, decode) path in this process on one thread, the median over
    ``rounds`` of reading every image once, paths taking turns within a round: ``cpu`` per second of the
    process's CPU time (what a core of its own would do: a busy machine lends it only part of a core)
    and ``wall`` per second of wall-clock time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    datasets = {(t, d): _dataset(split, t, d) for t in TRANSFORMS for d in DECODES}
    times: dict[tuple[str, str], dict[str, list[float]]] = {key: {"cpu": [], "wall": []} for key in datasets}
    try:
        for key, ds in datasets.items():  # warm-up: imports, first-call set-up
            ds[(0, 0)]
        for r in range(rounds):
            for key, ds in datasets.items():
                cpu, wall = time.process_time(), time.perf_counter()
                for item in _items(len(split)):
                    ds[item]
                times[key]["cpu"].append(time.process_time() - cpu)
                times[key]["wall"].append(time.perf_counter() - wall)
            log(f"round {r + 1}: " + ", ".join(f"{t}/{d} {len(split) / times[(t, d)]['cpu'][-1]:.0f} img/s"
                                              for t, d in datasets))
    finally:
        torch.set_num_threads(threads)
    return {key: {k: len(split) / statistics.median(v) for k, v in ts.items()} for key, ts in times.items()}


def with_workers(split: Split, transform: str, decode: str, workers: int, batch: int = 32) -> float:
    """Images per second through a DataLoader with ``workers`` processes as a training run builds it
    (persistent, prefetching), after one warm-up pass that starts them."""
    from torch.utils.data import DataLoader

    from ..train.batches import collate

    batches = [_items(len(split))[i:i + batch] for i in range(0, len(split), batch)]
    loader = DataLoader(_dataset(split, transform, decode), batch_sampler=batches, collate_fn=collate,
                        **loader_options(workers, "cpu"))
    for _ in loader:
        pass
    t0 = time.perf_counter()
    for _ in loader:
        pass
    return len(split) / (time.perf_counter() - t0)


def difference(split: Split, transform: str, train: bool) -> dict:
    """The fast path's output against PIL's on the same crops, in levels of 255 (un-normalised)."""
    pil, fast = _dataset(split, transform, "pil", train), _dataset(split, transform, "torchvision", train)
    std = torch.tensor(IMAGENET_STD if transform == "study" else CLIP_STD).view(3, 1, 1)
    diffs = torch.stack([((pil[item][0] - fast[item][0]) * std * 255).abs() for item in _items(len(split))])
    return {"transform": transform, "train": train, "mean_abs_255": diffs.mean().item(),
            "p99_abs_255": diffs.flatten().kthvalue(max(1, int(0.99 * diffs.numel()))).values.item(),
            "max_abs_255": diffs.max().item()}


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
        for (t, d), rate in single.items():
            log(f"{t}/{d} with {measured_workers} worker(s)")
            pooled = with_workers(split, t, d, measured_workers)
            paths.append({"transform": t, "decode": d, "img_s_per_core": rate["cpu"], "img_s_wall": rate["wall"],
                          "workers": measured_workers, "workers_img_s": pooled,
                          "workers_img_s_per_core": pooled / measured_workers})
        log("comparing the fast path's output with PIL's")
        diffs = [difference(split, t, train) for t in TRANSFORMS for train in (True, False)]
    pil, fast = single[("study", "pil")]["cpu"], single[("study", "torchvision")]["cpu"]
    loader = {"images": images, "rounds": rounds, "jpeg_kib": jpeg_kib, "sizes": SIZES, "quality": QUALITY,
              "pil_img_s_per_core": pil, "fast_img_s_per_core": fast, "ratio": fast / pil,
              "workers": workers, "measured_workers": measured_workers, "cores": cores or here, "usable_cores": here,
              "paths": paths, "difference": diffs}
    return {"loader": loader, "target": {"key": key, "gpu": gpu, "bf16_tflops": tflops, "utilisation": UTILISATION},
            "towers": predict({"pil": pil, "fast": fast}, workers, tflops), "load_avg": os.getloadavg(),
            "torch": torch.__version__, "wall_s": time.perf_counter() - started}


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
    print(f"\nfast path (torchvision) / PIL, the study's transform: {lo['ratio']:.2f}x per core")
    for d in lo["difference"]:
        print(f"  {d['transform']:9s} {'train' if d['train'] else 'eval ':5s} |fast - PIL| in levels of 255: "
              f"mean {d['mean_abs_255']:.2f}, p99 {d['p99_abs_255']:.1f}, max {d['max_abs_255']:.0f}")
    rows = [[t["backbone"], round(t["tower_gflop"], 1), round(t["tower_img_s"]), round(t["pil_loader_img_s"]),
             t["pil_bound"], t["pil_cores_needed"], round(t["fast_loader_img_s"]), t["fast_bound"],
             t["fast_cores_needed"]] for t in report["towers"]]
    print()
    render(["backbone", "GFLOP", "tower img/s", "PIL img/s", "PIL bound", "PIL cores", "fast img/s", "fast bound",
            "fast cores"], rows, fmt_name, console=console,
           title=f"{tg['gpu']} ({tg['bf16_tflops']:.0f} bf16 TFLOP/s at {tg['utilisation']:.0%}), "
                 f"{lo['workers']} loader workers ({lo['cores']} cores)")
