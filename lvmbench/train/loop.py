"""The training loop, executed by the child process (``python -m lvmbench.train RUN_DIR [RUN_DIR ...]``).

It reads each run's ``spec.json`` and writes everything else of its run directory: ``status.json``,
``metrics.jsonl``, ``system.jsonl``, ``eval/`` and ``ckpt/``. It never touches the results database.

Several runs given at once are a fused group (see :mod:`lvmbench.runs.fused`): they read the same
images in the same order with the same augmentations, so the frozen tower runs once per step and
each run then takes its own step (its model, loss, optimizer, schedule, RNG streams, checkpoint).
One run is a group of one: the same code path.
"""
from __future__ import annotations

import math
import os
import random
import socket
import time
from contextlib import contextmanager

import numpy as np
import torch

from .. import catalog, paths
from ..data import build_dataset
from ..data.summary import class_summary, describe_classes
from ..data.transforms import lift_transforms, study_transforms
from ..errors import UserError
from ..evaluate import compute_metrics
from ..methods.build import build_task
from ..methods.stage2 import count_trainable
from ..models.backbone import Backbone
from ..models.decoder import Decoder
from ..runs.rundir import LOADER_WAIT, TIMESTAMP, RunDir, now
from ..runs.segments import group_cost, total_cost
from . import cache, checkpoint, device_decode, encoder, gpus, tte
from .batches import StepBatchSampler
from .distributed import Dist
from .gpus import run_device
from .loader import WaitLog, data_workers, loader_options, timed
from .monitor import SystemMonitor, peak_rss_mib

EVAL_BATCH = 256


def _ignore(record: dict) -> None:
    """Only rank 0 writes the run directory."""


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite: the run stops instead of training on garbage."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(step: int, warmup: int, total: int, cycles: float = 7 / 16) -> float:
    """The study's schedule (USB's ``get_cosine_schedule_with_warmup``): the factor of step ``step``
    (0-based) rises linearly as ``step / warmup``, then is ``max(0, cos(pi * cycles * progress))``;
    with ``cycles = 7/16`` the last step runs at about 0.2 x lr."""
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, math.cos(math.pi * cycles * progress))


def lift_lr_factor(step: int, total: int, epochs: int) -> float:
    """LIFT's schedule (shijxcs/LIFT ``trainer.py``: ``CosineAnnealingLR(optim, num_epochs)``, stepped after
    each epoch): every step of epoch ``e`` runs at ``(1 + cos(pi * e / epochs)) / 2``; the ``total`` steps
    split into ``epochs`` epochs of equal length, step ``step`` (0-based) lies in epoch ``step * epochs // total``."""
    epoch = step * epochs // max(1, total)
    return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def schedule(spec: dict):
    """The run's lr factor of step ``s`` (0-based), as ``train.schedule`` names it."""
    if spec.get("train.schedule", "study") == "lift":
        return lambda s: lift_lr_factor(s, spec["train.iters"], spec["train.epochs"])
    return lambda s: lr_factor(s, spec["train.warmup_iters"], spec["train.iters"], spec["train.cosine_cycles"])


def build_optimizer(spec: dict, params: list[torch.nn.Parameter], device: torch.device):
    """SGD (Nesterov momentum) or AdamW. ``train.decay_params=matrices``: weight decay on tensors of 2 or
    more dimensions only, the study's rule (timm's ``param_groups_weight_decay``: no 1-D tensors, no
    biases); ``all``: on every parameter, as the authors' stage-2 optimizers do."""
    every = spec.get("train.decay_params", "matrices") == "all"
    decay = [p for p in params if every or p.ndim > 1]
    no_decay = [p for p in params if not (every or p.ndim > 1)]
    groups = [{"params": decay, "weight_decay": spec["train.weight_decay"]},
              {"params": no_decay, "weight_decay": 0.0}]
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if spec["train.optimizer"] == "adamw":
        return torch.optim.AdamW(groups, lr=spec["train.lr"], **fast)
    nesterov = spec["train.nesterov"] and spec["train.momentum"] > 0
    return torch.optim.SGD(groups, lr=spec["train.lr"], momentum=spec["train.momentum"], nesterov=nesterov, **fast)


def optimizer_summary(model: torch.nn.Module, optimizer) -> list[dict]:
    """What each parameter group of ``optimizer`` holds, as recorded in status.json (``optimizer``):
    its weight decay and the name and shape of each of its parameters."""
    names = {id(p): name for name, p in model.named_parameters()}
    return [{"weight_decay": group["weight_decay"],
             "params": {names[id(p)]: list(p.shape) for p in group["params"]}}
            for group in optimizer.param_groups]


# What the runs of a group share: built once from the first run's spec (they agree on all of it).
SHARED = ("dist", "device", "dataset", "bad_image_runs", "on_bad", "backbone", "hflip", "encoder_mode", "features",
          "reported", "base_rng")


class Trainer:
    """Everything one run needs, built from its spec; ``shared``: a trainer of the same fused group
    whose data, tower and feature cache this one reuses (its own model is built from the same RNG
    state as if it trained alone). ``prepare=False`` leaves the tower's precision to :meth:`group`."""

    def __init__(self, run: RunDir, device: torch.device | None = None, dist: Dist | None = None,
                 shared: "Trainer | None" = None, prepare: bool = True):
        self.run, self.spec = run, run.spec()
        self.info = catalog.method(self.spec["method"])
        self.prints = True  # this run's lines go to the process's stdout (else to its own stdout.log)
        if shared is None:
            self._build_shared(device, dist)
        else:
            for name in SHARED:
                setattr(self, name, getattr(shared, name))
            self.bad_image_runs.append(run)
            if self.spec["data.on_bad_image"] == "skip" and self.dist.main:
                for record in self.dataset.skipped:
                    run.append(run.bad_images_file, record)
            checkpoint.set_rng_state(self.base_rng)
        self.task = build_task(self.spec, self.backbone, self.dataset, run.path)
        self.task.model.to(self.device)
        if self.task.loss is not None:
            self.task.loss.to(self.device)
        if prepare:
            self.prepare_tower()
        if self.spec["train.compile"]:
            for module in self.task.model.modules():
                if isinstance(module, Decoder):
                    module.compile()
        self.rng = checkpoint.rng_state()  # this run's RNG streams, swapped in around its own work

    def _build_shared(self, device, dist) -> None:
        self.dist = dist or Dist()  # several processes: see train/distributed.py
        self.device = device or run_device(self.spec.get("train.device", "auto"), self.dist.local_rank,
                                           self.dist.active)
        device_decode.decode_device(self.decode, self.device)  # data.decode=cuda on a CPU: refused before any work
        if self.spec["train.threads"]:
            torch.set_num_threads(self.spec["train.threads"])
        seed_everything(self.spec["seed"])
        # On a GPU too (cuBLAS then needs CUBLAS_WORKSPACE_CONFIG, set by the child's entry point): what
        # "fused = alone", "resume = uninterrupted" and "2 processes = 1" hold there, see README.
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        self.dataset = build_dataset(self.spec)
        self.bad_image_runs = [self.run]
        print(f"data: {describe_classes(class_summary(self.dataset))}", flush=True)
        self.on_bad = None  # data.on_bad_image=skip: unreadable images are listed in bad_images.jsonl
        if self.spec["data.on_bad_image"] == "skip":
            self.on_bad = self._bad_image if self.dist.main else _ignore
            for record in self.dataset.skipped:
                self.on_bad(record)
        self.backbone = Backbone(self.spec["backbone"], self.spec["pretrained"]).to(self.device)
        print(f"weights: {self.backbone.weights.describe()}", flush=True)
        self.hflip = getattr(self.dataset, "hflip", self.spec["dataset"] != "mnist-lt")
        self.encoder_mode = encoder.resolve(self.spec["encoder.precision"], self.device)
        self.features: dict[str, cache.CachedFeatures] = {}  # per split, from the feature cache
        self.reported: dict[str, set[int]] = {}  # per split: unreadable images already recorded
        self.base_rng = checkpoint.rng_state()  # what every model of the group is built from

    def _bad_image(self, record: dict) -> None:
        for run in self.bad_image_runs:
            run.append(run.bad_images_file, record)

    def prepare_tower(self) -> None:
        if self.task.feature != "images":  # a tower that trains (full fine-tuning) keeps fp32 weights
            encoder.prepare(self.backbone, self.encoder_mode)

    @classmethod
    def group(cls, runs: list[RunDir], device: torch.device | None = None, dist: Dist | None = None,
              on_failure=None) -> list["Trainer"]:
        """The trainers of a fused group, built in order from the same RNG state; a run whose own
        part cannot be built (e.g. a bad hyper-parameter) is reported to ``on_failure(run, exc)`` and
        left out (with no ``on_failure``, or alone, the error propagates)."""
        members: list[Trainer] = []
        for run in runs:
            try:
                members.append(cls(run, device, dist, shared=members[0] if members else None, prepare=False))
            except Exception as exc:  # noqa: BLE001 - one member's error is that member's failure
                if on_failure is None or len(runs) == 1:
                    raise
                on_failure(run, exc)
        for member in members[1:]:
            member.prints = False
        if members:
            members[0].prepare_tower()  # after every head is built: a text-initialised head reads the fp32 tower
        return members

    @contextmanager
    def own_rng(self):
        """This run's RNG streams (torch, numpy, Python) in place, as if it trained alone."""
        checkpoint.set_rng_state(self.rng)
        try:
            yield
        finally:
            self.rng = checkpoint.rng_state()

    def say(self, text: str) -> None:
        if self.prints:
            print(text, flush=True)
        else:
            with open(self.run.log_file, "a") as f:
                f.write(text + "\n")

    # -- inputs ---------------------------------------------------------------------------------
    def autocast(self):
        return encoder.model_autocast(self.device, self.spec["train.precision"])

    def encode(self, images: torch.Tensor, for_training: bool = False) -> torch.Tensor:
        """What the task's model reads, from a batch of images (the frozen part, no gradients)."""
        images = images.to(self.device, non_blocking=True)
        if self.task.feature == "images":
            return images
        x = encoder.encode(self.backbone, images, self.encoder_mode, self.task.feature, for_training)
        return encoder.model_input(x)

    def cached(self, name: str, split, views: int = 1) -> cache.CachedFeatures:
        """The task's features of a split from the feature cache: encoded once for every method, stage
        and seed that shares (split, backbone, weights, transform, views, precision); checked on open."""
        if name in self.features:
            return self.features[name]
        stored = "tokens" if self.task.feature == "tokens" or self.backbone.is_vit else "pooled"
        weights = self.backbone.weights
        transform = self.transforms(views > 1)
        parts = {"split": cache.split_fingerprint(split), "backbone": self.backbone.name,
                 "weights": cache.weights_fingerprint(weights.source), "quick_gelu": weights.quick_gelu,
                 "transform": repr(transform), "decode": self.decode, "views": views,
                 "feature": stored, "precision": self.encoder_mode}
        entry = cache.FeatureCache(paths.cache_dir(), parts, views * len(split))

        def encode_rows(rows):
            items = cache.row_items(rows, len(split), views)
            batches = [items[i:i + EVAL_BATCH] for i in range(0, len(items), EVAL_BATCH)]
            for batch, (images, _, index) in zip(batches, self.loader(split, views > 1, batches, report=False)):
                x = encoder.encode(self.backbone, images.to(self.device, non_blocking=True), self.encoder_mode,
                                   stored)
                yield x if len(images) == len(batch) else unreadable_rows(batch, index, x)

        feats = entry.ensure(encode_rows)
        if stored != self.task.feature:
            feats = feats.map(lambda t: encoder.pool(self.backbone, t.to(self.device), self.encoder_mode))
        if cache.fits_on(self.device, feats.nbytes):
            feats = feats.to(self.device)
        done = f"encoded {entry.encoded_rows} of {len(feats)} rows" if entry.encoded_rows else "reused"
        self.say(f"feature cache {name}: {done} ({entry.key}, {feats.nbytes / 2**20:.1f} MiB)")
        self.features[name] = feats
        return feats

    def train_inputs(self, split, sampler):
        """(inputs, labels, loader wait) of each training step: cached views (``cache.mode=train``; no
        loader, wait None) or images encoded on the fly with the study's augmentation (the seconds the
        step waited for its batch of images)."""
        if self.task.feature == "images" or self.spec["cache.mode"] != "train":
            for (images, labels, _), waited in timed(self.loader(split, True, sampler)):
                yield self.encode(images, for_training=True), labels.to(self.device, non_blocking=True), waited
            return
        views = self.spec["cache.views"]
        feats, labels = self.cached("train", split, views), torch.as_tensor(split.labels)
        batches = (cache.train_rows(items, len(split), views) for items in sampler)
        for x, rows in cache.stream(feats, batches, self.device):
            x, y = self.readable(split, "train", x, labels[rows % len(split)], rows % len(split))
            yield encoder.model_input(x), y.to(self.device, non_blocking=True), None

    @property
    def decode(self) -> str:
        """``data.decode``: images read as PIL images (the study's path), as uint8 tensors by torchvision,
        or decoded on the GPU (``cuda``)."""
        return self.spec.get("data.decode", "pil")

    def transforms(self, train: bool):
        """``data.transform``: the study's transforms (``recipe=paper``), LIFT's (its PEFT methods) or open_clip's
        preprocessing."""
        kind = self.spec.get("data.transform", "open_clip")
        if kind == "study":
            return study_transforms(self.spec["dataset"], self.backbone.image_size, train, self.hflip,
                                    self.dataset.crop_scale, self.decode)
        if kind == "lift":
            return lift_transforms(self.backbone.image_size, train, self.backbone.mean, self.backbone.std, self.hflip,
                                   self.dataset.crop_scale, self.decode)
        return self.backbone.transforms(train, hflip=self.hflip, crop_scale=self.dataset.crop_scale,
                                        decode=self.decode)

    def loader(self, split, train: bool, batch_sampler=None, report: bool = True, transform=None):
        """``(images, labels, index)`` batches of ``split``, the images float and normalised (on the device on
        the tensor paths, which hand uint8 batches over to it; ``data.decode=cuda`` decodes there too: see
        :mod:`.device_decode`). ``report=False``: skipped images
        are not recorded here (the cache's readers record them); ``transform``: instead of the split's own
        (test-time ensembling's crops)."""
        on_bad = self.on_bad if report or self.on_bad is None else _ignore
        transform = transform or self.transforms(train)
        workers = data_workers(self.spec["train.num_workers"], self.device.type)
        # Its own generator: a loader never draws from the global RNG (a resumed run stays exact).
        kwargs = dict(generator=torch.Generator(), **loader_options(workers, self.device.type))
        if batch_sampler is not None:
            kwargs["batch_sampler"] = batch_sampler
        else:
            kwargs.update(batch_size=EVAL_BATCH, shuffle=False)
        return device_decode.image_batches(split, transform, self.decode, self.device, on_bad, **kwargs)

    # -- evaluation -----------------------------------------------------------------------------
    def eval_inputs(self, split_name: str):
        """Yield (inputs, labels) batches of an evaluation split: from the feature cache unless
        ``cache.mode=off`` (or the task reads images)."""
        split = self.dataset.split(split_name)
        if self.spec["eval.tte"]:  # every crop through the encoder or the model's tower: no feature cache
            transform = tte.CropsTransform(self.backbone.image_size, self.spec["eval.tte_expand"],
                                          self.spec["eval.tte_mode"], self.backbone.mean, self.backbone.std,
                                          self.decode)
            for images, labels, _ in self.loader(split, train=False, transform=transform):
                yield self.encode(images.flatten(0, 1)), labels
            return
        if self.task.feature == "images" or self.spec["cache.mode"] == "off":
            for images, labels, _ in self.loader(split, train=False):
                yield self.encode(images), labels
            return
        labels = torch.as_tensor(split.labels).split(EVAL_BATCH)
        for k, (x, y) in enumerate(zip(self.cached(split_name, split).batches(EVAL_BATCH), labels)):
            x, y = self.readable(split, split_name, x, y, np.arange(k * EVAL_BATCH, k * EVAL_BATCH + len(y)))
            yield encoder.model_input(x.to(self.device, non_blocking=True)), y

    def readable(self, split, name: str, x: torch.Tensor, y: torch.Tensor, samples: np.ndarray):
        """Cached rows without the images that could not be decoded (stored as NaN rows): skipped and
        recorded under ``data.on_bad_image=skip`` (once per image, also when another run cached them),
        an error otherwise."""
        bad = torch.isnan(x.reshape(len(x), -1)[:, 0]).cpu().numpy()
        if not bad.any():
            return x, y
        first = int(samples[np.flatnonzero(bad)[0]])
        if self.on_bad is None:
            raise UserError(f"cannot decode image {split.describe(first)} (--set data.on_bad_image=skip to skip it)")
        for i in sorted({int(i) for i in samples[bad]} - self.reported.setdefault(name, set())):
            self.reported[name].add(i)
            self.on_bad({"image": str(split.path(i)), "error": "cannot decode"})
        keep = torch.as_tensor(~bad)
        if not keep.any():
            raise UserError(f"no image of a {name} batch could be decoded (data.on_bad_image=skip); see bad_images.jsonl")
        return x[keep.to(x.device)], y[keep.to(y.device)]

    @torch.no_grad()
    def predict(self, split_name: str) -> tuple[np.ndarray, np.ndarray]:
        model = self.task.model
        was_training = model.training
        model.eval()
        preds, targets = [], []
        for x, labels in self.eval_inputs(split_name):
            with self.autocast():
                logits = model(x)
            if self.spec["eval.tte"]:
                logits = tte.average_logits(logits, tte.CROPS[self.spec["eval.tte_mode"]])
            preds.append(logits.argmax(-1).cpu())
            targets.append(labels)
        model.train(was_training)
        return torch.cat(preds).numpy(), torch.cat(targets).numpy()

    def evaluate(self, split_name: str):
        preds, targets = self.predict(split_name)
        return compute_metrics(preds, targets, self.dataset.train_counts, self.dataset.class_names)

    # -- training -------------------------------------------------------------------------------
    def fit(self, log) -> dict:
        """Train for ``train.iters`` steps alone; keep the best-val weights; return timing figures."""
        self.log = log
        return fit_group([self])[0]

    def start(self) -> int:
        """Build the optimizer and schedule and restore the last checkpoint; return the first step to train."""
        spec, select = self.spec, self.selection_split()
        self.say("the final weights are evaluated (no split to select them on)" if select == "final" else
                 f"the weights with the best {select} accuracy are evaluated")
        with self.own_rng():
            self.optimizer = build_optimizer(spec, self.task.trainable(), self.device)
            if self.dist.main:
                self.run.note(optimizer=optimizer_summary(self.task.model, self.optimizer))
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule(spec))
            last = self.run.checkpoint_file
            resumed = checkpoint.load(last, model=self.task.model, optimizer=self.optimizer,
                                      scheduler=self.scheduler, loss=self.task.loss)
        self.start_step = resumed["step"] if resumed else 0
        if resumed:
            self.say(f"resuming from step {self.start_step} ({last})")
        self.best = resumed["best"] if resumed else {"val_overall": -1.0, "step": None, "state": None}
        self.train_s = resumed["train_s"] if resumed else 0.0
        self.task.model.train()
        self.net = self.dist.wrap(self.task.model, self.device)
        return self.start_step

    def train_step(self, step: int, x: torch.Tensor, labels: torch.Tensor) -> None:
        """One optimisation step of this run's model on the (shared) inputs of step ``step``."""
        spec, loss_fn, optimizer = self.spec, self.task.loss, self.optimizer
        if hasattr(loss_fn, "set_progress"):
            loss_fn.set_progress(step / spec["train.iters"])
        loss, failure = None, None
        try:
            with self.autocast():
                logits = self.net(x)
            loss = loss_fn(logits.float(), labels)
        except Exception as exc:  # noqa: BLE001 - with several ranks, they all learn of it first
            failure = exc
        seen = self.dist.agree(loss, failure, self.device)  # the global batch's loss, the same on every rank
        if not torch.isfinite(seen):
            raise NonFiniteLoss(f"loss became {seen.item()} at step {step + 1}; lower train.lr "
                                f"(now {spec['train.lr']}) or check the data")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        self.scheduler.step()
        done = step + 1
        if done % spec["train.log_every"] == 0 or done == spec["train.iters"]:
            waited = self.waits.window()
            self.log({"step": done, "loss": seen.item(), "lr": optimizer.param_groups[0]["lr"],
                      **({LOADER_WAIT: waited} if waited is not None else {})})

    def after_step(self, done: int) -> None:
        """Model selection (keeping the best weights) and the checkpoint, when due after ``done`` steps."""
        spec, model, select = self.spec, self.task.model, self.selection_split()
        due = done % spec["train.eval_every"] == 0 or done == spec["train.iters"]
        if select != "final" and self.dist.main and due:
            result = self.evaluate(select)
            self.log({"step": done, **{f"{select}/{k}": v for k, v in result.to_dict().items() if k != "n_samples"}})
            if result.overall > self.best["val_overall"]:
                self.best = {"val_overall": result.overall, "step": done, "state": checkpoint.model_state(model)}
        if self.dist.main and (done == spec["train.iters"] or (spec["ckpt.every"] and done % spec["ckpt.every"] == 0)):
            checkpoint.save(self.run.checkpoint_file, step=done, model=model, optimizer=self.optimizer,
                            scheduler=self.scheduler, loss=self.task.loss, best=self.best, train_s=self.train_s)

    def finish(self) -> dict:
        if self.best["state"] is not None:
            checkpoint.load_model_state(self.task.model, self.best["state"])
        iters = self.spec["train.iters"]
        return {"train_s": self.train_s, "s_per_iter": self.train_s / max(iters, 1), "best_step": self.best["step"],
                "selected_on": self.selection_split() if self.best["state"] is not None else "final",
                "loader_wait_s": self.waits.mean}

    def selection_split(self) -> str:
        """The split whose best overall accuracy chooses the evaluated weights (``train.select``), or
        ``final`` (the last weights) when there is none, e.g. ``val`` on a dataset without a val split."""
        name = self.spec["train.select"]
        split = None if name == "final" else getattr(self.dataset, name)
        return name if split is not None and len(split) else "final"


def fit_group(members: list[Trainer], on_failure=None) -> list[dict]:
    """Train a fused group: each step's inputs are made once (the tower's forward pass) and every
    member takes its own step on them, inside its own RNG streams. A member's ``train_s`` is its own
    step time plus an equal part of the time spent making the inputs (its whole step time alone).
    A member that fails is reported to ``on_failure(member, exc)`` and dropped; the others go on
    (without ``on_failure``, or alone, the error propagates). Returns the timing figures of the
    members that finished, in order."""
    leader, spec = members[0], members[0].spec
    start = min(m.start() for m in members)
    train = leader.task.train_split if leader.task.train_split is not None else leader.dataset.train
    sampler = StepBatchSampler(train.labels, spec["train.batch_size"], leader.task.sampler, spec["seed"],
                               spec["train.iters"], start_step=start, rank=leader.dist.rank, world=leader.dist.world,
                               balanced=spec.get("sampler.balanced", "uniform"))
    active = list(members)
    for m in members:
        m.own_s, m.failed, m.waits = 0.0, False, WaitLog()
    t_in = clock(leader.device)
    for step, (x, labels, waited) in enumerate(leader.train_inputs(train, sampler), start):
        due = [m for m in active if step >= m.start_step]
        shared = (clock(leader.device) - t_in) / max(len(due), 1)
        for m in due:
            if waited is not None:
                m.waits.add(waited)
            t0 = clock(leader.device)
            try:
                with m.own_rng():
                    m.train_step(step, x, labels)
                    m.train_s += clock(leader.device) - t0 + shared
                    m.after_step(step + 1)
            except Exception as exc:  # noqa: BLE001 - one member's error is that member's failure
                if on_failure is None or len(members) == 1:
                    raise
                m.failed = True
                active.remove(m)
                m.say(f"failed at step {step + 1}: {type(exc).__name__}: {exc}")
                on_failure(m, exc)
            m.own_s += clock(leader.device) - t0
        if not active:
            break
        t_in = clock(leader.device)
    return [m.finish() for m in active]


def clock(device: torch.device) -> float:
    """``time.perf_counter()`` once the device has done the work queued so far: CUDA runs asynchronously,
    so without this one member's backward pass would be billed to the next member's time."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _pct(value) -> str:
    """A percentage as the log shows it: two decimals, or ``-`` for a shot group without classes."""
    return "-" if value is None else f"{value:.2f}"


def unreadable_rows(batch: list, index: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A cached batch's rows where the images that could not be decoded (left out by ``collate``) are
    NaN: the cache keeps one row per sample, and readers skip NaN rows (``Trainer.readable``)."""
    readable = set(index.tolist())
    at = [k for k, item in enumerate(batch) if (item[0] if isinstance(item, tuple) else item) in readable]
    out = torch.full((len(batch), *x.shape[1:]), float("nan"), dtype=x.dtype, device=x.device)
    out[torch.as_tensor(at, device=x.device)] = x
    return out


def write_eval(run: RunDir, split: str, result) -> None:
    run.write_eval(split, result.to_dict(), result.per_class)


def follow_group(runs: list[RunDir], dist: Dist) -> None:
    """A rank other than 0: train in step with rank 0 on its slice of each batch; write nothing."""
    def say(run: RunDir, exc: BaseException) -> None:  # rank 0 records the member's failure
        print(f"rank {dist.rank}: {run.run_id} failed: {type(exc).__name__}: {exc}", flush=True)

    members = [m for m in Trainer.group(runs, dist=dist, on_failure=say) if m.task.trainable()]
    for m in members:
        m.log = lambda record: None
    if members:
        fit_group(members, on_failure=lambda member, exc: say(member.run, exc))


def _logger(member: Trainer):
    run, iters = member.run, member.spec["train.iters"]

    def log(record: dict) -> None:
        record[TIMESTAMP] = now()
        run.append(run.metrics_file, record)
        if "loss" in record:
            member.say(f"step {record['step']}/{iters} loss {record['loss']:.4f} lr {record['lr']:.3g}")
        for split in ("val", "test"):
            if f"{split}/overall" in record:
                member.say(f"step {record['step']} {split} overall {record[f'{split}/overall']:.2f}")

    return log


def train_run(run: RunDir, dist: Dist | None = None) -> dict:
    """Run one training job end to end (a fused group of one) and return its final status fields."""
    statuses = train_group([run], dist)
    return statuses[0] if statuses else {}


def train_group(runs: list[RunDir], dist: Dist | None = None, on_failure=None) -> list[dict]:
    """Train runs that share their inputs as one fused group, end to end; return the final status of
    each member that finished. ``on_failure(run, exc)`` records a member that fails (it is dropped,
    the others go on); without it, or for a single run, the error propagates.

    Costs: the group's wall time, energy and peak memory are measured once; each member's
    ``wall_s`` is its own time (its steps, evaluations, checkpoints) plus an equal part of the
    shared time (data, tower, start-up), so the members' shares add up to the group's wall time,
    and its ``energy_kwh`` is the group's energy in the same proportion. ``peak_mem_mib`` is the
    group's (a process's peak does not divide). Alone, every share is the whole.
    """
    if dist is not None and not dist.main:
        follow_group(runs, dist)
        return []
    for run in runs:
        run.mark_running(pid=os.getpid(), host=socket.gethostname(),
                         group_pid=os.getppid() if "LOCAL_RANK" in os.environ else None)  # under torchrun: its group
    members = Trainer.group(runs, dist=dist, on_failure=on_failure)
    if not members:
        return []
    device = members[0].device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def fail(member: Trainer, exc: Exception) -> None:
        member.failed = True
        on_failure(member.run, exc)

    for m in members:
        m.log, m.own_s, m.failed = _logger(m), 0.0, False
    trained = [m for m in members if m.task.trainable()]
    timing = {id(m): {"train_s": 0.0, "s_per_iter": None, "selected_on": "final"} for m in members}

    def write_system(record: dict) -> None:
        for m in members:
            m.run.append(m.run.system_file, record)

    with SystemMonitor(write_system, gpus=gpus.run_uuids(members[0].dist) if device.type == "cuda" else ()) as monitor:
        t_start = time.perf_counter()
        if trained:
            finished = fit_group(trained, fail if on_failure else None)
            timing.update(zip(map(id, [m for m in trained if not m.failed]), finished))
        for m in [m for m in members if not m.failed]:
            t0 = time.perf_counter()
            try:
                finish_run(m)
            except Exception as exc:  # noqa: BLE001
                if on_failure is None or len(members) == 1:
                    raise
                fail(m, exc)
            m.own_s += time.perf_counter() - t0
        wall = time.perf_counter() - t_start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mib()
    power = monitor.summary(wall)
    shared_s = max(wall - sum(m.own_s for m in members), 0.0) / len(members)
    statuses = []
    for m in [m for m in members if not m.failed]:
        share = min(m.own_s + shared_s, wall) if len(members) > 1 else wall
        part = share / wall if wall > 0 else 1.0
        energy = power["energy_kwh"] * part if power["energy_kwh"] is not None else None
        # a resumed run adds its earlier segments, in the same part as this one
        cost = {**power, **total_cost(m.run, share, energy, part=part)}
        model_params = sum(p.numel() for p in m.task.model.parameters())
        frozen_visual = sum(p.numel() for p in m.backbone.clip.visual.parameters())
        statuses.append(m.run.mark_finished(
            device=str(device),
            trainable_params=count_trainable(m.task.model),
            total_params=model_params + (0 if m.task.feature == "images" else frozen_visual),
            iters=m.spec["train.iters"] if m in trained else 0, batch_size=m.spec["train.batch_size"],
            peak_mem_mib=peak, stage=m.info.stage, parent_run_id=m.spec.get("stage1.run_id"),
            skipped_images=m.run.skipped_images(), weights=m.backbone.weights.describe(),
            fused_size=len(runs), group_peak_mem_mib=peak, **group_cost(m.run, wall, power["energy_kwh"]),
            **timing[id(m)], **cost))
    return statuses


def finish_run(member: Trainer) -> None:
    """Save the final (best-val) weights and write the val and test evaluations."""
    run = member.run
    if member.task.trainable():
        run.ckpt_dir.mkdir(exist_ok=True)
        checkpoint.atomic_save(member.task.model.state_dict(), run.model_file)
    for module in member.task.model.modules():  # e.g. MARC's norms under marc.eval_norm=fresh
        if hasattr(module, "final_evaluation"):
            module.final_evaluation()
    for split in ("val", "test"):
        if getattr(member.dataset, split) is not None and len(getattr(member.dataset, split)):
            result = member.evaluate(split)
            write_eval(run, split, result)
            member.say(f"{split}: " + " ".join(f"{k} {_pct(getattr(result, k))}"
                                                for k in ("overall", "many", "medium", "few")))
