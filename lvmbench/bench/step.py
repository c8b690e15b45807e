"""``lvmbench bench``: the decoder's training step in each input mode, on synthetic data.

Random weights (``open_clip.create_model`` without ``pretrained``) and random inputs: nothing is
downloaded or read. Every mode runs the same step as the training loop (the study's decoder, 3 timm
blocks, with a 1000-class head, cross-entropy, SGD) at the same batch size; only where the tokens
come from and the precision change:

=================  =========================================================================
reference          the fp32 tower at every step, fp32 decoder, TF32 matmuls on a GPU: the study's
                   reference code (Wang et al. 2023, Table 8: ViT-L/14, 0.99 s/iter of 256 images on an
                   RTX 4090; ``set_float32_matmul_precision('high')`` in its imblearn/nets/clip/clip.py)
tower-bf16         the tower at every step in bf16 (``cache.mode=eval``, the default)
cached-fp32        tokens gathered from bf16 cached features (``cache.mode=train``), fp32 decoder
cached-bf16        the same, decoder under bf16 autocast (``train.precision=bf16``; auto on a GPU)
cached-compile     cached-bf16 with a ``torch.compile``'d decoder (``--compile``, ``train.compile``)
cached-host        cached-bf16 read from a memory-mapped file, as an entry too large for half of the
                   GPU's free memory is: gathered a thread ahead into pinned memory, copied
                   asynchronously, checked for finiteness on the device (``cache.stream``)
separate-K         ``--fused K``: K runs of tower-bf16, each its own step (K towers, K decoders)
fused-K            ``--fused K``: one tower pass, then K decoders each take their step (a fused
                   training group of K methods, one tower forward per step)
=================  =========================================================================

A step of separate-K or fused-K trains K decoders on one batch each: their ``s_per_iter`` is
for all K, while ``images_per_s`` and the speedup count member-steps (K batches per step), so
they compare with the single-run modes per decoder trained.

Modes run round-robin, one step each per round, so that a machine whose load drifts slows them
alike; a mode's speedup is the median, over rounds, of the reference's time over its own in
that round. A mode takes part in a round while it has fewer than ``--iters`` steps and its
median step still fits in ``--max-seconds``: every mode is timed once, cheap modes more often. A
mode that runs out of memory is dropped (the report's ``dropped`` says why) and the others go on.
"""
from __future__ import annotations

import copy
import ctypes
import logging
import statistics
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import catalog, config
from ..errors import UserError, unknown

NUM_CLASSES = 1000  # ImageNet-LT
CACHE_BATCHES = 4  # the synthetic cache holds this many batches of rows; steps gather random rows
# ImageNet-LT (Liu et al. 2019): the split sizes the whole-sweep estimate uses.
IMAGENET_LT = {"train": 115_846, "val": 20_000, "test": 50_000}
PAPER = {"backbone": "ViT-L-14", "batch_size": 256, "s_per_iter": 0.99, "images_per_s": 259, "gpu": "RTX 4090"}


@dataclass(frozen=True)
class Mode:
    name: str
    encoder: str | None  # lvmbench.train.encoder.MODES; None: tokens come from the cache
    decoder: str  # train.precision: fp32 | bf16
    compile: bool = False
    decoders: int = 1  # decoders trained per step (separate-K, fused-K)
    shared_tower: bool = False  # one tower pass serves every decoder (fused-K)
    peft: str | None = None  # a LIFT method tuned inside the tower instead of a decoder on top of it
    tf32: bool = False  # fp32 matmuls on TF32 tensor cores (a GPU's), as the study's code ran them
    host_cache: bool = False  # cached rows read from a memory map in host memory, not from the device


def modes(device: torch.device, compile_decoder: bool = False, fused: int = 0) -> list[Mode]:
    from ..train import encoder

    fast, default_decoder = encoder.resolve("auto", device), "bf16" if device.type == "cuda" else "fp32"
    out = [Mode("reference", "fp32", "fp32", tf32=True), Mode("tower-bf16", fast, default_decoder),
           Mode("cached-fp32", None, "fp32"), Mode("cached-bf16", None, "bf16"),
           Mode("cached-host", None, "bf16", host_cache=True)]
    if compile_decoder:
        out.append(Mode("cached-compile", None, "bf16", compile=True))
    # LIFT's default: AdaptFormer inside the fp32 tower, bf16 autocast where the hardware runs it natively.
    out.append(Mode("peft-lift", "fp32", "bf16" if device.type == "cuda" else "fp32", peft="lift"))
    if fused:
        out += [Mode(f"separate-{fused}", fast, default_decoder, decoders=fused),
                Mode(f"fused-{fused}", fast, default_decoder, decoders=fused, shared_tower=True)]
    return out


def peft_model(backbone, method: str = "lift") -> torch.nn.Module:
    """LIFT's model on ``backbone``: ``method`` inside a copy of its tower, a cosine classifier (scale 25)."""
    from ..methods.lift import PeftClassifier
    from ..models.heads import CosineHead
    from ..models.peft import peft_tower

    method = method if backbone.is_vit else "bitfit"  # a ResNet tower takes LIFT's bitfit or ssf only
    tower = peft_tower(copy.deepcopy(backbone.clip.visual), method, NUM_CLASSES, is_vit=backbone.is_vit,
                       name=backbone.name)
    return PeftClassifier(tower, CosineHead(tower.width, NUM_CLASSES, 25.0))


def random_backbone(name: str):
    """A :class:`Backbone` with randomly initialised weights: no download, any open_clip model."""
    import open_clip

    from ..models import tiny_clip
    from ..models.backbone import Backbone

    tiny_clip.register()
    if name not in open_clip.list_models():
        raise unknown("backbone", name, open_clip.list_models())
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # "no pretrained weights loaded" is the point here
    try:
        clip = open_clip.create_model(name)
    finally:
        logging.getLogger().setLevel(quiet)
    return Backbone(name, "random", clip=clip)


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class _PeakMemory:
    """Peak memory of one step above what was allocated before it: CUDA's allocator statistics, or
    on a CPU the process's resident size sampled every millisecond (large blocks are mapped and
    returned to the system at once, see :func:`_return_freed_memory`)."""

    def __init__(self, device: torch.device):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            from ..train.monitor import rss_mib

            self.base = rss_mib()
            self._max, self._stop = self.base, threading.Event()
            self._thread = threading.Thread(target=self._sample, args=(rss_mib,), daemon=True)
            self._thread.start()
        return self

    def _sample(self, rss_mib) -> None:
        while not self._stop.wait(0.001):
            self._max = max(self._max, rss_mib())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = (torch.cuda.max_memory_allocated() - self.base) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak = self._max - self.base
        return False


@contextmanager
def _matmul_precision(precision: str):
    """fp32 matmuls at ``precision`` (``high``: TF32 on a GPU that has it) for the duration."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def host_copy(store: torch.Tensor, folder: str):
    """``store`` (cached rows) as a memory-mapped file in ``folder``: what an entry too large for its
    GPU share is read from during training."""
    from ..train import cache

    path = f"{folder}/rows.bin"
    store.cpu().view(torch.int16).numpy().tofile(path)
    return cache.CachedFeatures([cache.memmap_rows(path, len(store), tuple(store.shape[1:]))], len(store))


def _out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in str(exc).lower()


def _return_freed_memory() -> None:
    """glibc: serve blocks of 1 MiB and more by mmap, so that freeing them lowers the resident size."""
    try:
        ctypes.CDLL(None).mallopt(-3, 2**20)  # M_MMAP_THRESHOLD; fixing it also stops glibc raising it
    except (OSError, AttributeError):
        pass


class Runner:
    """One mode's models, optimizers and inputs, and its training step (one decoder, or K)."""

    def __init__(self, mode: Mode, backbone, images, cached, device, seed: int = 0):
        from ..models.classifier import DecoderClassifier
        from ..models.decoder import Decoder
        from ..train import cache, encoder
        from ..train.loop import build_optimizer

        spec = {k: p.default for k, p in config.SCHEMA.items()}
        self.mode, self.backbone, self.images, self.cached, self.device = mode, backbone, images, cached, device
        torch.manual_seed(seed)
        if mode.peft:
            spec.update(catalog.method("lift").defaults)
            self.models = [peft_model(backbone, mode.peft).to(device).train() for _ in range(mode.decoders)]
        else:
            self.models = [DecoderClassifier.from_spec(spec, backbone.width, NUM_CLASSES).to(device).train()
                           for _ in range(mode.decoders)]
        if mode.compile:
            for module in (m for model in self.models for m in model.modules()):
                if isinstance(module, Decoder):
                    module.compile()
        self.optimizers = [build_optimizer(spec, [p for p in m.parameters() if p.requires_grad], device)
                           for m in self.models]
        self.generator = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, NUM_CLASSES, (len(images),), generator=self.generator).to(device)
        self.encoder = encoder
        self.times: dict[int, float] = {}  # round -> seconds
        self.peak_mib = 0.0
        if mode.host_cache:  # rows streamed as training streams them (a thread ahead, pinned, checked on the device)
            self.stream = cache.stream(cached, self._random_rows(), device)

    def _random_rows(self):
        while True:
            yield torch.randint(0, len(self.cached), (len(self.images),), generator=self.generator)

    def inputs(self) -> torch.Tensor:
        enc = self.encoder
        if self.mode.peft:
            return self.images
        if self.mode.encoder is not None:
            return enc.model_input(enc.encode(self.backbone, self.images, self.mode.encoder, for_training=True))
        if self.mode.host_cache:
            return enc.model_input(next(self.stream)[0])
        rows = torch.randint(0, len(self.cached), (len(self.images),), generator=self.generator)
        return enc.model_input(self.cached.gather(rows).to(self.device, non_blocking=True))

    def step(self) -> None:
        with _matmul_precision("high" if self.mode.tf32 else "highest"):
            self._step()

    def _step(self) -> None:
        shared = self.inputs() if self.mode.shared_tower else None
        for model, optimizer in zip(self.models, self.optimizers):
            x = shared if shared is not None else self.inputs()
            with self.encoder.model_autocast(self.device, self.mode.decoder):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), self.labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def timed_step(self, round_no: int) -> float:
        with _PeakMemory(self.device) as peak:
            t0 = time.perf_counter()
            self.step()
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.times[round_no] = time.perf_counter() - t0
        self.peak_mib = max(self.peak_mib, peak.peak)
        return self.times[round_no]

    def speedup_over(self, reference: "Runner") -> float:
        """The median, over the rounds both ran, of reference time / this mode's time: each ratio
        compares steps taken moments apart, under the same load."""
        k = self.mode.decoders
        both = [k * reference.times[r] / self.times[r] for r in self.times if r in reference.times]
        return statistics.median(both) if both else k * statistics.median(reference.times.values()) / self.seconds()

    def ratio_over(self, other: "Runner") -> float:
        """The median, over the rounds both ran, of the other mode's step time over this one's."""
        both = [other.times[r] / self.times[r] for r in self.times if r in other.times]
        return statistics.median(both) if both else other.seconds() / self.seconds()

    def seconds(self) -> float:
        return statistics.median(self.times.values())

    def resident_mib(self) -> float:
        """What the mode keeps between steps: tower weights it runs, decoder, optimizer state, inputs."""
        tower = _bytes(self.backbone.clip.visual.parameters()) if self.mode.encoder and not self.mode.peft else 0
        state = [t for o in self.optimizers for s in o.state.values() for t in s.values() if torch.is_tensor(t)]
        inputs = _bytes([self.images]) if self.mode.encoder else self.cached.nbytes
        params = [p for m in self.models for p in m.parameters()]
        return (tower + _bytes(params) + _bytes(state) + inputs) / 2**20


def flops_per_image(backbone, device) -> dict:
    """GFLOP per image of the tower's forward pass and of the decoder's training step (batch of 1)."""
    from torch.utils.flop_counter import FlopCounterMode

    from ..models.classifier import DecoderClassifier

    spec = {k: p.default for k, p in config.SCHEMA.items()}
    image = torch.zeros(1, 3, backbone.image_size, backbone.image_size, device=device,
                        dtype=next(backbone.clip.visual.parameters()).dtype)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused attention kernel is invisible to the counter
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as tower:
            tokens = backbone.tokens(image)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    model = DecoderClassifier.from_spec(spec, backbone.width, NUM_CLASSES).to(device)
    with FlopCounterMode(display=False) as step:
        F.cross_entropy(model(tokens.float()), torch.zeros(1, dtype=torch.long, device=device)).backward()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        peft = peft_model(backbone).to(device)
        with FlopCounterMode(display=False) as peft_step:
            F.cross_entropy(peft(image.float()), torch.zeros(1, dtype=torch.long, device=device)).backward()
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return {"tower_forward_gflop": tower.get_total_flops() / 1e9, "decoder_step_gflop": step.get_total_flops() / 1e9,
            "peft_step_gflop": peft_step.get_total_flops() / 1e9, "tokens": list(tokens.shape[1:])}


def sweep_estimate(per_image: dict[str, float], views: int = 1) -> dict:
    """Encoder passes and hours for the study's 14-method ImageNet-LT grid at the default recipe.

    ``per_image``: seconds per image of a reference step, a cached step, an fp32 and a bf16 tower
    forward (from this machine's measurements, extrapolated linearly to the recipe's batch size).
    The grid: every method that reads the frozen tower (zero-shot, linear probe, 8 decoder losses,
    4 two-stage adjusters); each trained one costs ``train.iters`` decoder steps (an upper bound for
    the linear probe), evaluating the val split every ``train.eval_every`` steps and the test split once.
    """
    grid = [m.name for m in catalog.METHODS.values() if m.kind in ("zeroshot", "linear_probe", "decoder", "stage2")]
    trained = [m for m in grid if catalog.METHODS[m].kind != "zeroshot"]
    spec = {k: p.default for k, p in config.SCHEMA.items()}
    iters, batch, every = spec["train.iters"], spec["train.batch_size"], spec["train.eval_every"]
    n = IMAGENET_LT
    steps = len(trained) * iters * batch  # images through a training step, whole grid
    eval_passes = len(trained) * (iters // every * n["val"] + n["test"]) + n["val"] + n["test"]
    eval_once = n["val"] + n["test"]
    scenarios = {
        "reference": (steps + eval_passes,
                      steps * per_image["reference"] + eval_passes * per_image["tower_fp32"]),
        "cache_eval": (steps + eval_once,
                       steps * per_image["tower_step"] + eval_once * per_image["tower_bf16"]),
        "cache_train": (views * n["train"] + eval_once,
                        steps * per_image["cached"] + (views * n["train"] + eval_once) * per_image["tower_bf16"]),
    }
    one_run = (views * n["train"] + eval_once) * per_image["tower_bf16"] + iters * batch * per_image["cached"]
    return {"dataset": "imagenet-lt", "methods": grid, "iters": iters, "batch_size": batch, "views": views,
            **{f"{k}_encoder_passes": v[0] for k, v in scenarios.items()},
            **{f"{k}_hours": v[1] / 3600 for k, v in scenarios.items()},
            "one_cached_run_minutes": one_run / 60}


def run(backbone: str = "ViT-B-16", batch_size: int = 32, iters: int = 3, max_seconds: float = 150.0,
        compile_decoder: bool = False, threads: int = 0, device: str | None = None, log=None,
        fused: int = 0) -> dict:
    """Measure every mode and return the report (see ``lvmbench bench --help``); ``fused`` = K adds
    the separate-K and fused-K modes and the report's ``fused`` section."""
    from ..train import cache, encoder

    if batch_size < 1 or iters < 1:
        raise UserError("--batch-size and --iters must be >= 1")
    if fused < 0 or fused == 1:
        raise UserError("--fused K needs K >= 2 decoders sharing one tower pass")
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    log = log or (lambda text: None)
    _return_freed_memory()
    started = time.perf_counter()
    fp32 = random_backbone(backbone).to(dev)
    torch.manual_seed(0)
    images = torch.randn(batch_size, 3, fp32.image_size, fp32.image_size, device=dev)
    all_modes = modes(dev, compile_decoder, fused)
    towers = {"fp32": fp32}
    for m in all_modes:
        if m.encoder and m.encoder not in towers:
            towers[m.encoder] = encoder.prepare(copy.deepcopy(fp32), m.encoder) if m.encoder == "bf16-weights" else fp32
    log("counting FLOPs")
    flops = flops_per_image(fp32, dev)
    store = torch.randn(CACHE_BATCHES * batch_size, *flops["tokens"], device=dev).to(cache.STORE_DTYPE)
    cached = cache.CachedFeatures([store], len(store))
    dropped: dict[str, str] = {}

    def drop(r: Runner, exc: Exception, when: str) -> None:
        """One mode's failure costs that mode only: out of memory, or torch.compile without a toolchain."""
        if not (_out_of_memory(exc) or r.mode.compile):
            raise exc
        why = "out of memory" if _out_of_memory(exc) else f"torch.compile failed ({type(exc).__name__})"
        log(f"{r.mode.name} dropped at {when}: {why}")
        dropped[r.mode.name] = f"{why} at {when}"
        runners.remove(r)
        r.models = r.optimizers = r.stream = None
        if dev.type == "cuda":
            torch.cuda.empty_cache()

    with tempfile.TemporaryDirectory(prefix="lvmbench-bench-") as folder:
        host = host_copy(store, folder)
        runners = [Runner(m, towers.get(m.encoder, fp32), images, host if m.host_cache else cached, dev)
                   for m in all_modes]
        for r in list(runners):
            if r.mode.encoder is None or dev.type == "cuda":  # a CPU tower step costs too much to waste
                log(f"warm-up {r.mode.name}")
                try:
                    r.step()
                except Exception as exc:  # noqa: BLE001 - see drop
                    drop(r, exc, "warm-up")
        rounds = 0
        while True:
            due = [r for r in runners if not r.times or (len(r.times) < iters and
                                                          time.perf_counter() - started + r.seconds() <= max_seconds)]
            if not due:
                break
            rounds += 1
            for r in due:
                try:
                    log(f"round {rounds}: {r.mode.name} {r.timed_step(rounds):.2f} s")
                except Exception as exc:  # noqa: BLE001 - see drop
                    drop(r, exc, f"round {rounds}")
        return _report(runners, flops, backbone, batch_size, dev, rounds, time.perf_counter() - started, dropped)


def _report(runners, flops, backbone, batch_size, dev, rounds, wall, dropped=None) -> dict:
    by_name = {r.mode.name: r.seconds() for r in runners}
    reference = next((r for r in runners if r.mode.name == "reference"), None)
    rows = []
    for r in runners:
        s = by_name[r.mode.name]
        rows.append({"name": r.mode.name, "tower": r.mode.encoder or "cached", "decoder": r.mode.decoder,
                     "decoders": r.mode.decoders, "s_per_iter": s, "images_per_s": r.mode.decoders * batch_size / s,
                     "peak_mem_mib": r.resident_mib() + r.peak_mib,
                     "speedup_vs_reference": r.speedup_over(reference) if reference else None, "iters": len(r.times),
                     "s_per_iter_by_round": {str(k): v for k, v in r.times.items()}})
    per_image = _per_image(runners, by_name, batch_size)
    report = {"backbone": backbone, "batch_size": batch_size, "device": str(dev), "device_name": device_name(dev),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "rounds": rounds, "wall_s": wall,
              "modes": rows, "dropped": dropped or {}, "flops_per_image": flops, "seconds_per_image": per_image,
              "sweep_estimate": sweep_estimate(per_image) if per_image else None, "paper": PAPER}
    fused = next((r for r in runners if r.mode.shared_tower), None)
    separate = fused and next((r for r in runners if r.mode.decoders == fused.mode.decoders and not r.mode.shared_tower),
                              None)
    if fused is not None and separate is not None:
        k = fused.mode.decoders
        report["fused"] = {"k": k, "separate_s_per_iter": separate.seconds(), "fused_s_per_iter": fused.seconds(),
                           "ratio": fused.ratio_over(separate), "peak_mem_mib": fused.resident_mib() + fused.peak_mib,
                           "separate_peak_mem_mib": separate.resident_mib() + separate.peak_mib,
                           "flops_bound": fused_flops_bound(flops, k)}
    return report


def _per_image(runners, by_name: dict, batch_size: int) -> dict | None:
    """Seconds per image of each part of a step, for the sweep estimate (None: a mode it needs was dropped)."""
    device_cached = [by_name[r.mode.name] for r in runners if r.mode.name.startswith("cached") and not r.mode.host_cache]
    tower_mode = next((r for r in runners if r.mode.name == "tower-bf16"), None)
    need = ("reference", "tower-bf16", "cached-fp32", "cached-bf16")
    if tower_mode is None or not device_cached or any(n not in by_name for n in need):
        return None
    ref = by_name["reference"]
    decoder_of_tower = by_name["cached-bf16" if tower_mode.mode.decoder == "bf16" else "cached-fp32"]
    return {"reference": ref / batch_size, "tower_step": by_name["tower-bf16"] / batch_size,
            "cached": min(device_cached) / batch_size,
            "tower_fp32": max(ref - by_name["cached-fp32"], 0.0) / batch_size,
            "tower_bf16": max(by_name["tower-bf16"] - decoder_of_tower, 0.0) / batch_size}


def fused_flops_bound(flops: dict, k: int) -> float:
    """The most a fused step can gain: K (tower forward + decoder step) over one tower + K decoder steps."""
    tower, step = flops["tower_forward_gflop"], flops["decoder_step_gflop"]
    return k * (tower + step) / (tower + k * step)


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "cpu"


def print_report(report: dict, fmt_name: str = "table") -> None:
    """The modes as a table (or Markdown, or the report as one JSON object), then the sweep estimate."""
    import json

    from ..render import output, render

    if fmt_name == "json":
        print(json.dumps(report, indent=1))
        return
    cols = ["mode", "tower", "decoder", "s/iter", "images/s", "peak MiB", "speedup"]
    rows = [[m["name"], m["tower"], m["decoder"], round(m["s_per_iter"], 3), round(m["images_per_s"], 1),
             round(m["peak_mem_mib"]),
             "-" if m["speedup_vs_reference"] is None else f"{m['speedup_vs_reference']:.1f}x"] for m in report["modes"]]
    steps = sorted({m["iters"] for m in report["modes"]})
    title = (f"{report['backbone']}, batch {report['batch_size']}, {report['device_name']} "
             f"({report['device']}, {report['threads']} threads), median of {'-'.join(map(str, steps))} step(s)")
    render(cols, rows, fmt_name, title=title, console=output(min_width=110))
    for name, why in report.get("dropped", {}).items():
        print(f"{name}: dropped ({why})")
    f, s = report["flops_per_image"], report["sweep_estimate"]
    print(f"\nper image: tower forward {f['tower_forward_gflop']:.3g} GFLOP, decoder step "
          f"{f['decoder_step_gflop']:.3g} GFLOP (tokens {f['tokens']}), LIFT step inside the tower "
          f"{f['peft_step_gflop']:.3g} GFLOP")
    if s is not None:
        print(f"whole sweep, {len(s['methods'])} methods on ImageNet-LT ({s['iters']} x {s['batch_size']}), "
              f"this device, extrapolated:")
        for k, label in (("reference", "reference (no cache, fp32)"), ("cache_eval", "cache.mode=eval (default)"),
                         ("cache_train", f"cache.mode=train, {s['views']} view(s)")):
            print(f"  {label:32s} {s[k + '_encoder_passes']:>13,} encoder passes  {s[k + '_hours']:10.1f} h")
        print(f"  one cached decoder run, encoding included: {s['one_cached_run_minutes']:.1f} min")
    if "fused" in report:
        fu = report["fused"]
        print(f"\nfused group of {fu['k']}: {fu['separate_s_per_iter']:.3g} s for {fu['k']} separate steps, "
              f"{fu['fused_s_per_iter']:.3g} s fused = {fu['ratio']:.2f}x (median of per-round ratios; FLOPs bound "
              f"{fu['flops_bound']:.2f}x), peak {fu['peak_mem_mib']:.0f} MiB fused, "
              f"{fu['separate_peak_mem_mib']:.0f} MiB separate")
