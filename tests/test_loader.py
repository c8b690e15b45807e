"""The data path: the fast decode path against PIL's, loader workers, the loader-wait metric, and
``lvmbench bench --loader``."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from lvmbench import config
from lvmbench.bench import loader as bench_loader
from lvmbench.data.transforms import (IMAGENET_MEAN, IMAGENET_STD, STATS, lift_transforms, open_clip_transforms,
                                      study_transforms)
from lvmbench.train import device_decode, tte
from lvmbench.train.batches import ImageDataset
from lvmbench.train.loader import WaitLog, data_workers, loader_options, timed

CLIP = (bench_loader.CLIP_MEAN, bench_loader.CLIP_STD)
# The fast path's tolerance against PIL's on the same crops, in levels of 255 (measured on the generated
# JPEGs: mean 0.03-0.04, at most 2 levels; README, "Data loading").
MEAN_LEVELS, MAX_LEVELS = 0.1, 3.0


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    return bench_loader.make_images(tmp_path_factory.mktemp("jpegs"), 8)


def levels(split, transform_pil, transform_fast, std, train=True) -> torch.Tensor:
    """|fast - PIL| in levels of 255 over the split, the same augmentation seed per image on both paths."""
    pil, fast = ImageDataset(split, transform_pil, decode="pil"), ImageDataset(split, transform_fast, decode="torchvision")
    std = torch.tensor(std).view(-1, 1, 1)
    items = [(i, 7 + i) if train else i for i in range(len(split))]
    return torch.stack([((pil[item][0] - fast[item][0]) * std * 255).abs() for item in items])


TRANSFORMS = {  # every data.transform, with every dataset statistics it uses
    **{f"study/{ds}": (lambda train, decode, ds=ds: study_transforms(ds, 64, train, decode=decode),
                       STATS.get(ds, (IMAGENET_MEAN, IMAGENET_STD))[1]) for ds in ("imagenet-lt", "inat18")},
    "open_clip": (lambda train, decode: open_clip_transforms(64, train, *CLIP, decode=decode), CLIP[1]),
}


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_the_fast_path_matches_pil_within_the_stated_tolerance(jpegs, name, train):
    build, std = TRANSFORMS[name]
    fast = build(train, "torchvision")
    assert type(fast).__module__.startswith("torchvision.transforms.v2")  # really the tensor path
    diff = levels(jpegs, build(train, "pil"), fast, std, train)
    assert diff.shape == (len(jpegs), 3, 64, 64)
    assert diff.mean() <= MEAN_LEVELS and diff.max() <= MAX_LEVELS, (diff.mean(), diff.max())


def test_the_fast_path_on_in_memory_images_and_test_time_crops(jpegs):
    """mnist-lt's grey 28 px digits (open_clip's crops at 28 px); LIFT's five crops of a JPEG."""
    from lvmbench.data.base import Split

    digits = Split(np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8), np.zeros(6, np.int64))
    assert digits.load(0, "torchvision").shape == (3, 28, 28) and digits.load(0, "torchvision").dtype == torch.uint8
    for train in (True, False):
        diff = levels(digits, *(open_clip_transforms(28, train, *CLIP, crop_scale=(0.8, 1.0), decode=d)
                                for d in ("pil", "torchvision")), CLIP[1], train)
        assert diff.mean() <= MEAN_LEVELS and diff.max() <= MAX_LEVELS
    crops = [tte.CropsTransform(48, 8, "tencrop", *CLIP, decode=d) for d in ("pil", "torchvision")]
    diff = levels(jpegs, *crops, std=CLIP[1], train=False)
    assert diff.shape[1:] == (10, 3, 48, 48) and diff.mean() <= MEAN_LEVELS and diff.max() <= MAX_LEVELS


def test_a_file_torchvision_cannot_decode_goes_through_pil(tmp_path):
    from PIL import Image

    from lvmbench.data.base import BadImage, Split

    Image.new("RGB", (20, 10), (10, 200, 30)).save(tmp_path / "a.bmp")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    split = Split(["a.bmp", "broken.jpg"], np.zeros(2, np.int64), root=tmp_path)
    image = split.load(0, "torchvision")
    assert image.dtype == torch.uint8 and image[:, 0, 0].tolist() == [10, 200, 30]
    with pytest.raises(BadImage, match="broken.jpg"):
        split.load(1, "torchvision")


def test_the_decode_setting_reaches_the_loader_and_defaults_per_recipe(tmp_path, random_tiny_clip):
    """The fast path's worker (a real worker process) hands over uint8 views; the run gets them float and
    normalised on its device, as the worker computed them before (the run's transform whole, per image)."""
    from .test_identity import trainer

    t = trainer(tmp_path, random_tiny_clip, **{"data.decode": "torchvision", "train.num_workers": 1})
    items = [(0, 1), (1, 2)]
    loader = t.loader(t.dataset.val, train=True, batch_sampler=[items])
    workers = loader.batches
    assert workers.dataset.decode == "torchvision" and workers.num_workers == 1
    assert type(workers.dataset.transform).__module__.startswith("torchvision.transforms.v2")
    crossed, _, _ = next(iter(workers))
    assert crossed.dtype == torch.uint8 and crossed.shape == (2, 3, 28, 28)  # a quarter of float32's bytes
    images, _, _ = next(iter(loader))
    assert images.dtype == torch.float32 and images.device == t.device
    before = ImageDataset(t.dataset.val, t.transforms(True), decode="torchvision")
    assert torch.equal(images, torch.stack([before[item][0] for item in items]))
    assert config.resolve("imagenet-lt", "ViT-B-16", "ce")["data.decode"] == "pil"  # the study's code
    assert config.resolve("imagenet-lt", "ViT-B-16", "ce", overrides={"recipe": "reference"})["data.decode"] \
        == "torchvision"


def test_auto_workers_take_every_usable_core_but_one_on_a_gpu_machine(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert data_workers(-1, "cuda") == 15  # a 16-core GPU machine: no cap at 8
    assert data_workers(-1, "cpu") == 0  # the tower needs the cores itself
    assert data_workers(3, "cuda") == 3 and data_workers(0, "cuda") == 0
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {4, 5, 6, 7}, raising=False)
    assert data_workers(-1, "cuda") == 3  # a slot of a machine divided between runs: its own cores
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert data_workers(-1, "cuda") == 1
    assert loader_options(15, "cuda") == {"num_workers": 15, "pin_memory": True, "persistent_workers": True,
                                          "prefetch_factor": 4}
    assert loader_options(0, "cpu") == {"num_workers": 0, "pin_memory": False, "persistent_workers": False}


def test_wait_log_means_per_window_and_per_run():
    waits = WaitLog()
    assert waits.window() is None and waits.mean is None
    for seconds in (0.1, 0.3):
        waits.add(seconds)
    assert waits.window() == pytest.approx(0.2) and waits.window() is None
    waits.add(0.8)
    assert waits.window() == pytest.approx(0.8) and waits.mean == pytest.approx(0.4)
    assert [item for item, _ in timed(iter([1, 2]))] == [1, 2] and all(w >= 0 for _, w in timed([1]))


def test_tower_flops_and_which_side_bounds_a_step():
    assert bench_loader.tower_gflop("ViT-B-16") == pytest.approx(35.1, abs=0.1)
    assert bench_loader.tower_gflop("ViT-L-14") == pytest.approx(162.0, abs=0.1)
    rows = {r["backbone"]: r for r in bench_loader.predict({"pil": 200.0, "fast": 500.0}, 15, 989.4)}
    b16 = rows["ViT-B-16"]
    assert b16["tower_img_s"] == pytest.approx(0.5 * 989.4e12 / 35.13e9, rel=1e-3)  # about 14,000 img/s
    assert b16["fast_loader_img_s"] == 7500 and b16["fast_bound"] == "loader"
    assert b16["fast_cores_needed"] == int(np.ceil(b16["tower_img_s"] / 500)) + 1
    l14 = rows["ViT-L-14"]
    assert l14["fast_bound"] == "tower" and l14["pil_bound"] == "loader"  # 3,053 img/s: 7,500 vs 3,000


def test_bench_loader_json(capsys):
    from lvmbench.cli import main

    assert main(["bench", "--loader", "--loader-images", "8", "--loader-rounds", "1", "--target", "h100",
                 "--cores", "16", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    loader = report["loader"]
    assert loader["ratio"] == pytest.approx(loader["fast_img_s_per_core"] / loader["pil_img_s_per_core"])
    assert loader["workers"] == 15 and loader["measured_workers"] >= 1
    assert {(p["transform"], p["decode"]) for p in loader["paths"]} == {
        (t, d) for t in ("study", "open_clip") for d in ("pil", "torchvision")}
    assert all(p["img_s_per_core"] > 0 and p["workers_img_s"] > 0 for p in loader["paths"])
    assert all(d["max_abs_255"] <= MAX_LEVELS for d in loader["difference"]) and len(loader["difference"]) == 4
    assert [t["backbone"] for t in report["towers"]] == ["ViT-B-16", "ViT-L-14"]
    assert report["target"]["gpu"] == "H100" and len(report["load_avg"]) == 3
    # The stages: decoding alone on each CPU path, its full path (the very figure of the path's rate), the GPU
    # path's CPU side; the ceiling is PIL's full path over torchvision's decoding alone.
    ms = loader["stages_ms"]
    assert set(ms) == {"pil_decode", "pil_full", "torchvision_decode", "torchvision_full", "torchvision_float",
                       "torchvision_float_on_cpu", "cuda_read_collate"}
    assert all(v > 0 for v in ms.values())
    assert ms["pil_full"] == pytest.approx(1000 / loader["pil_img_s_per_core"])
    assert ms["torchvision_full"] == pytest.approx(1000 / loader["fast_img_s_per_core"])
    # The fast path's CPU work ends at uint8 views; "before" kept its float conversion on the CPU too.
    assert loader["ratio_float_on_cpu"] == pytest.approx(ms["pil_full"] / ms["torchvision_float_on_cpu"])
    assert loader["ceiling_ratio"] == pytest.approx(ms["pil_full"] / ms["torchvision_decode"])
    cuda = loader["cuda"]
    assert cuda["cpu_ms_per_img"] == ms["cuda_read_collate"] and cuda["cpu_img_s_per_core"] > 0
    assert cuda["gpu"] is None and cuda["gpu_img_s"] is None  # no CUDA device in the suite: nothing claimed
    bench_loader.print_report(report)
    text = capsys.readouterr().out
    assert f"torchvision's decoding alone = {loader['ceiling_ratio']:.2f}x per core" in text
    assert "GPU path: read bytes + collate (its CPU side)" in text and "not measured (no CUDA device here)" in text
    assert f"({loader['ratio_float_on_cpu']:.2f}x with the float conversion and normalisation on the CPU" in text


def test_the_bench_times_what_the_fast_paths_workers_do(jpegs):
    """The fast path's timed work ends at uint8 views (the float part is timed as a stage of its own)."""
    paths = bench_loader.timed_paths(jpegs)
    views = paths[("study", "torchvision")]()
    assert {view.dtype for view, _, _ in views} == {torch.uint8}
    assert {view.dtype for view, _, _ in paths[("study", "pil")]()} == {torch.float32}
    assert {view.dtype for view, _, _ in paths[(bench_loader.FLOAT_ON_CPU, "torchvision")]()} == {torch.float32}
    assert {view.dtype for view in paths[(bench_loader.FLOAT_ONLY, "torchvision")]()} == {torch.float32}


def test_bench_loader_refuses_an_unknown_target(capsys):
    from lvmbench.cli import main

    assert main(["bench", "--loader", "--target", "tpu"]) == 2
    assert capsys.readouterr().err.strip() == "error: unknown --target 'tpu'; choose from: a100, h100, h200, l40s, rtx4090"


# -- data.decode=cuda: decoding on the run's device, here forced onto the CPU -------------------------
DEVICE_PATHS = {**TRANSFORMS, "lift": (lambda train, decode: lift_transforms(64, train, *CLIP, decode=decode), CLIP[1]),
                **{f"tte/{mode}": (lambda train, decode, mode=mode: tte.CropsTransform(48, 8, mode, *CLIP, decode=decode),
                                   CLIP[1]) for mode in tte.CROPS}}


@pytest.fixture(scope="module")
def mixed(jpegs, tmp_path_factory):
    """The generated JPEGs with a PNG among them (which nvJPEG cannot decode)."""
    from PIL import Image

    from lvmbench.data.base import Split

    folder = jpegs.root
    Image.open(folder / jpegs.samples[1]).save(folder / "img0001.png")
    names = [*jpegs.samples[:1], "img0001.png", *jpegs.samples[2:]]
    return Split(names, np.arange(len(names)) % 3, root=folder)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", list(DEVICE_PATHS))
def test_the_float_part_on_the_device_is_bit_for_bit_what_the_workers_computed_before(mixed, name, train):
    """Every data.transform (train and eval) and test-time ensembling's crops: the uint8 batch the workers
    hand over, made float and normalised by the run (here on the CPU), equals the float views each worker
    made before, bit for bit; the PIL path still runs its whole transform in the workers."""
    from torch.utils.data import DataLoader

    build = DEVICE_PATHS[name][0]
    transform = build(train, "torchvision")
    items = [(i, 7 + i) for i in range(len(mixed))] if train else list(range(len(mixed)))
    batches = device_decode.image_batches(mixed, transform, "torchvision", torch.device("cpu"), batch_sampler=[items])
    (crossed, labels, index), = batches.batches
    assert crossed.dtype == torch.uint8
    (images, labels_after, _), = batches
    before = ImageDataset(mixed, transform, decode="torchvision")  # the whole transform in the worker
    assert torch.equal(images, torch.stack([before[item][0] for item in items]))
    assert torch.equal(labels, labels_after) and index.tolist() == list(range(len(mixed)))
    pil = device_decode.image_batches(mixed, build(train, "pil"), "pil", torch.device("cpu"), batch_sampler=[items])
    assert isinstance(pil, DataLoader) and next(iter(pil))[0].dtype == torch.float32


def device_batch(split, transform, items, on_bad=None):
    dataset = device_decode.EncodedImages(split, on_bad)
    batch = device_decode.collate_encoded([dataset[item] for item in items])
    return device_decode.decode_batch(batch, dataset, transform, torch.device("cpu"))


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", list(DEVICE_PATHS))
def test_the_device_path_gives_the_torchvision_paths_tensors_bit_for_bit(mixed, name, train, monkeypatch):
    import torchvision.io

    decoded = []
    batched = torchvision.io.decode_jpeg
    monkeypatch.setattr(torchvision.io, "decode_jpeg", lambda data, **kw: decoded.append(len(data)) or batched(data, **kw))
    transform = DEVICE_PATHS[name][0](train, "cuda")
    items = [(i, 7 + i) for i in range(len(mixed))] if train else list(range(len(mixed)))
    images, labels, index = device_batch(mixed, transform, items)
    reference = ImageDataset(mixed, transform, decode="torchvision")
    assert torch.equal(images, torch.stack([reference[item][0] for item in items]))  # the PNG's too
    assert labels.tolist() == mixed.labels.tolist() and index.tolist() == list(range(len(mixed)))
    assert decoded == [len(mixed) - 1]  # one batched call for the JPEGs; the PNG went through the CPU decoders


def test_on_cuda_the_callers_stream_is_drained_before_nvjpeg_writes(jpegs, monkeypatch):
    """torchvision's CUDA decoder does not wait for the caller's stream (pytorch/vision PR 9606)."""
    import torchvision.io

    calls = []
    batched = torchvision.io.decode_jpeg

    class Stream:
        def synchronize(self):
            calls.append("synchronize")

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
    monkeypatch.setattr(torchvision.io, "decode_jpeg",
                        lambda data, mode, device: calls.append(f"decode on {device}") or batched(data, mode=mode))
    payloads = [device_decode.EncodedImages(jpegs)[i][0] for i in range(2)]
    assert [image.shape[0] for image in device_decode.decode_all(payloads, torch.device("cuda"))] == [3, 3]
    assert calls == ["synchronize", "decode on cuda"]


def test_the_device_path_takes_in_memory_images_as_the_worker_hands_them_over():
    """mnist-lt's grey digits: nothing to decode, the uint8 image goes to the device as it is."""
    from lvmbench.data.base import Split

    digits = Split(np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8), np.arange(5))
    transform = open_clip_transforms(28, True, *CLIP, crop_scale=(0.8, 1.0), decode="cuda")
    items = [(i, 3 * i) for i in range(5)]
    images, labels, _ = device_batch(digits, transform, items)
    reference = ImageDataset(digits, transform, decode="torchvision")
    assert torch.equal(images, torch.stack([reference[item][0] for item in items])) and labels.tolist() == [0, 1, 2, 3, 4]


def test_the_bench_measures_the_device_path_where_it_runs(jpegs):
    """What ``bench --loader`` runs on a CUDA machine, here with the CPU as the device: its output
    against the torchvision path's (the same, bit for bit, on the CPU) and its rate."""
    diff = bench_loader.difference(jpegs, "study", True, ("torchvision", "cuda"), device="cpu")
    assert diff["paths"] == ["torchvision", "cuda"] and diff["max_abs_255"] == 0.0
    assert bench_loader.gpu_rate(jpegs, rounds=1, batch=3, device="cpu") > 0


def test_the_device_path_reports_or_raises_unreadable_images(mixed, tmp_path):
    from lvmbench.data.base import BadImage, MissingImage, Split

    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    for name in mixed.samples[:2]:
        (tmp_path / name).write_bytes((mixed.root / name).read_bytes())
    split = Split([mixed.samples[0], "broken.jpg", "gone.jpg", mixed.samples[1]], np.zeros(4, np.int64), root=tmp_path)
    transform = study_transforms("imagenet-lt", 32, False, decode="cuda")
    seen = []
    images, _, index = device_batch(split, transform, range(4), on_bad=seen.append)
    assert images.shape == (2, 3, 32, 32) and index.tolist() == [0, 3]
    assert [r["image"] for r in seen] == [str(tmp_path / "gone.jpg"), str(tmp_path / "broken.jpg")]
    assert seen[1]["error"].startswith(f"cannot decode image {tmp_path / 'broken.jpg'}")
    with pytest.raises(BadImage, match="broken.jpg"):
        device_batch(split, transform, [0, 1])
    with pytest.raises(MissingImage, match="gone.jpg"):
        device_batch(split, transform, [2])


def test_the_device_path_is_refused_on_a_cpu_run(store, capsys):
    from lvmbench.cli import main

    assert main(["run", "--headless", "--set", "data.decode=cuda", "train.iters=2"]) == 2
    assert capsys.readouterr().err.strip() == ("error: data.decode=cuda decodes on the GPU, but this run trains on "
                                               "cpu: use data.decode=torchvision or pil on a CPU")
    assert not store[1].exists()  # refused before any run directory
    assert device_decode.decode_device("torchvision", torch.device("cpu")) is None


def float_in_the_workers(transform):
    """The fast path as it was before the float part moved to the device: the whole transform in the workers."""
    return transform, torch.nn.Identity()


def test_a_run_decoding_on_the_device_trains_as_the_torchvision_path_does(tmp_path, random_tiny_clip, mixed,
                                                                        monkeypatch):
    """The real loop (training views, the feature cache's build, evaluation): ``data.decode=torchvision``
    gives the metrics, step by step, that it gave with the float conversion in the workers (before), and
    the device path forced onto the CPU gives them too."""
    from lvmbench.runs.scheduler import prepare
    from lvmbench.train.loop import train_run

    from .conftest import TINY, trained_metrics

    lines = [f"{name} {label}\n" for name, label in zip(mixed.samples, mixed.labels)]
    (mixed.root / "device-train.txt").write_text("".join(lines * 3))
    (mixed.root / "device-test.txt").write_text("".join(lines))
    monkeypatch.setattr(device_decode, "decode_device", lambda decode, device: device if decode == "cuda" else None)
    batches = []
    decode_batch = device_decode.decode_batch
    monkeypatch.setattr(device_decode, "decode_batch", lambda *a: batches.append(len(a[0].index)) or decode_batch(*a))
    runs = {}
    for name, decode in (("before", "torchvision"), ("torchvision", "torchvision"), ("cuda", "cuda")):
        with monkeypatch.context() as m:
            if name == "before":  # its own feature cache: the one after the change must be built anew
                m.setattr(device_decode, "split_float", float_in_the_workers)
                m.setenv("LVMBENCH_CACHE", str(tmp_path / "cache-before"))
            overrides = {**config.parse_sets(TINY), "data.train_list": "device-train.txt", "data.decode": decode,
                         "data.val_list": "device-test.txt", "data.test_list": "device-test.txt"}
            spec = config.resolve("split-file", "tiny-clip", "ce", pretrained=random_tiny_clip,
                                  data_root=str(mixed.root), overrides=overrides)
            runs[name] = prepare(spec, tmp_path / name)
            assert train_run(runs[name])["status"] == "finished"
    assert 16 in batches and len(batches) >= 6  # training batches and the cache's (train views, val/test) decoded here
    for name in ("torchvision", "cuda"):
        assert trained_metrics(runs[name]) == trained_metrics(runs["before"])
        assert runs[name].evaluation("test") == runs["before"].evaluation("test")
