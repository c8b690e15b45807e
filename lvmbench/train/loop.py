"""The training loop of one run, executed by the child process (``python -m lvmbench.train RUN_DIR``).

It reads ``spec.json`` and writes everything else of the run directory: ``status.json``,
``metrics.jsonl``, ``system.jsonl``, ``eval/`` and ``ckpt/``. It never touches the results database.
"""
from __future__ import annotations

import functools
import math
import os
import random
import socket
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from .. import catalog, paths
from ..data import build_dataset
from ..data.summary import class_summary, describe_classes
from ..data.transforms import study_transforms
from ..errors import UserError
from ..evaluate import compute_metrics
from ..methods import build_task
from ..methods.stage2 import count_trainable
from ..models.backbone import Backbone
from ..models.decoder import Decoder
from ..runs.rundir import RunDir, now
from ..runs.segments import total_cost
from . import cache, checkpoint, encoder, tte
from .batches import ImageDataset, StepBatchSampler, collate
from .distributed import Dist
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


def data_workers(setting: int, device: torch.device) -> int:
    """DataLoader workers: ``-1`` (auto) feeds a GPU with up to 8 processes; on a CPU the
    frozen encoder needs the cores itself, so images load in the training process."""
    if setting >= 0:
        return setting
    if device.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores - 1))


class Trainer:
    """Everything one run needs, built from its spec."""

    def __init__(self, run: RunDir, device: torch.device | None = None, dist: Dist | None = None):
        self.run, self.spec = run, run.spec()
        self.dist = dist or Dist()  # several processes: see train/distributed.py
        self.device = device or self.dist.device()
        if self.spec["train.threads"]:
            torch.set_num_threads(self.spec["train.threads"])
        seed_everything(self.spec["seed"])
        if self.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.info = catalog.method(self.spec["method"])
        self.dataset = build_dataset(self.spec)
        print(f"data: {describe_classes(class_summary(self.dataset))}", flush=True)
        self.on_bad = None  # data.on_bad_image=skip: unreadable images are listed in bad_images.jsonl
        if self.spec["data.on_bad_image"] == "skip":
            self.on_bad = functools.partial(run.append, run.bad_images_file) if self.dist.main else _ignore
            for record in self.dataset.skipped:
                self.on_bad(record)
        self.backbone = Backbone(self.spec["backbone"], self.spec["pretrained"]).to(self.device)
        print(f"weights: {self.backbone.weights.describe()}", flush=True)
        self.task = build_task(self.spec, self.backbone, self.dataset, run.path)
        self.task.model.to(self.device)
        if self.task.loss is not None:
            self.task.loss.to(self.device)
        self.hflip = getattr(self.dataset, "hflip", self.spec["dataset"] != "mnist-lt")
        self.encoder_mode = encoder.resolve(self.spec["encoder.precision"], self.device)
        if self.task.feature != "images":  # a tower that trains (full fine-tuning) keeps fp32 weights
            encoder.prepare(self.backbone, self.encoder_mode)
        if self.spec["train.compile"]:
            for module in self.task.model.modules():
                if isinstance(module, Decoder):
                    module.compile()
        self.features: dict[str, cache.CachedFeatures] = {}  # per split, from the feature cache
        self.reported: dict[str, set[int]] = {}  # per split: unreadable images already recorded

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
                 "weights": cache.weights_fingerprint(weights.source),
                 "quick_gelu": weights.quick_gelu, "transform": repr(transform), "views": views,
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
        print(f"feature cache {name}: {done} ({entry.key}, {feats.nbytes / 2**20:.1f} MiB)", flush=True)
        self.features[name] = feats
        return feats

    def train_inputs(self, split, sampler):
        """(inputs, labels) of each training step: cached views (``cache.mode=train``) or images encoded
        on the fly with the study's augmentation."""
        if self.task.feature == "images" or self.spec["cache.mode"] != "train":
            for images, labels, _ in self.loader(split, True, sampler):
                yield self.encode(images, for_training=True), labels.to(self.device, non_blocking=True)
            return
        views = self.spec["cache.views"]
        feats, labels = self.cached("train", split, views), torch.as_tensor(split.labels)
        for items in sampler:
            rows = cache.train_rows(items, len(split), views)
            x, y = self.readable(split, "train", feats.gather(rows), labels[rows % len(split)], rows % len(split))
            yield encoder.model_input(x.to(self.device, non_blocking=True)), y.to(self.device, non_blocking=True)

    def transforms(self, train: bool):
        """``data.transform``: the study's transforms (``recipe=paper``) or open_clip's preprocessing."""
        if self.spec.get("data.transform", "open_clip") == "study":
            return study_transforms(self.spec["dataset"], self.backbone.image_size, train, self.hflip,
                                    self.dataset.crop_scale)
        return self.backbone.transforms(train, hflip=self.hflip, crop_scale=self.dataset.crop_scale)

    def loader(self, split, train: bool, batch_sampler=None, report: bool = True, transform=None) -> DataLoader:
        """``report=False``: skipped images are not recorded here (the cache's readers record them);
        ``transform``: instead of the split's own (test-time ensembling's crops)."""
        on_bad = self.on_bad if report or self.on_bad is None else _ignore
        dataset = ImageDataset(split, transform or self.transforms(train), on_bad=on_bad)
        workers = data_workers(self.spec["train.num_workers"], self.device)
        # Its own generator: a loader never draws from the global RNG (a resumed run stays exact).
        kwargs = dict(num_workers=workers, collate_fn=collate, pin_memory=self.device.type == "cuda",
                      persistent_workers=workers > 0, generator=torch.Generator())
        if batch_sampler is not None:
            return DataLoader(dataset, batch_sampler=batch_sampler, **kwargs)
        return DataLoader(dataset, batch_size=EVAL_BATCH, shuffle=False, **kwargs)

    # -- evaluation -----------------------------------------------------------------------------
    def eval_inputs(self, split_name: str):
        """Yield (inputs, labels) batches of an evaluation split: from the feature cache unless
        ``cache.mode=off`` (or the task reads images)."""
        split = self.dataset.split(split_name)
        if self.spec["eval.tte"]:  # every crop through the encoder or the model's tower: no feature cache
            transform = tte.tte_transform(self.backbone.image_size, self.spec["eval.tte_expand"],
                                          self.spec["eval.tte_mode"], self.backbone.mean, self.backbone.std)
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
        """Train for ``train.iters`` steps; keep the best-val weights; return timing figures."""
        spec, model, loss_fn = self.spec, self.task.model, self.task.loss
        iters = spec["train.iters"]
        params = self.task.trainable()
        optimizer = build_optimizer(spec, params, self.device)
        if self.dist.main:
            self.run.note(optimizer=optimizer_summary(model, optimizer))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, spec["train.warmup_iters"], iters, spec["train.cosine_cycles"]))
        train = self.task.train_split if self.task.train_split is not None else self.dataset.train
        sampler = StepBatchSampler(train.labels, spec["train.batch_size"], self.task.sampler, spec["seed"], iters,
                                   rank=self.dist.rank, world=self.dist.world,
                                   balanced=spec.get("sampler.balanced", "uniform"))
        select = self.selection_split()
        print("the final weights are evaluated (no split to select them on)" if select == "final" else
              f"the weights with the best {select} accuracy are evaluated", flush=True)
        last = self.run.checkpoint_file
        resumed = checkpoint.load(last, model=model, optimizer=optimizer, scheduler=scheduler, loss=loss_fn)
        sampler.start_step = resumed["step"] if resumed else 0
        if resumed:
            print(f"resuming from step {sampler.start_step} ({last})", flush=True)
        best = resumed["best"] if resumed else {"val_overall": -1.0, "step": None, "state": None}
        model.train()
        net = self.dist.wrap(model, self.device)
        train_time, t0 = resumed["train_s"] if resumed else 0.0, time.perf_counter()
        for step, (x, labels) in enumerate(self.train_inputs(train, sampler), sampler.start_step):
            if hasattr(loss_fn, "set_progress"):
                loss_fn.set_progress(step / iters)
            with self.autocast():
                logits = net(x)
            loss = loss_fn(logits.float(), labels)
            seen = self.dist.mean(loss)  # the global batch's loss, the same on every rank
            if not torch.isfinite(seen):
                raise NonFiniteLoss(f"loss became {seen.item()} at step {step}; lower train.lr "
                                    f"(now {spec['train.lr']}) or check the data")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            done = step + 1
            if done % spec["train.log_every"] == 0 or done == iters:
                log({"step": done, "loss": seen.item(), "lr": optimizer.param_groups[0]["lr"]})
            if select != "final" and self.dist.main and (done % spec["train.eval_every"] == 0 or done == iters):
                train_time += time.perf_counter() - t0
                result = self.evaluate(select)
                log({"step": done, **{f"{select}/{k}": v for k, v in result.to_dict().items() if k != "n_samples"}})
                if result.overall > best["val_overall"]:
                    best = {"val_overall": result.overall, "step": done, "state": checkpoint.model_state(model)}
                t0 = time.perf_counter()
            if self.dist.main and (done == iters or (spec["ckpt.every"] and done % spec["ckpt.every"] == 0)):
                train_time += time.perf_counter() - t0
                checkpoint.save(last, step=done, model=model, optimizer=optimizer, scheduler=scheduler,
                                loss=loss_fn, best=best, train_s=train_time)
                t0 = time.perf_counter()
        train_time += time.perf_counter() - t0
        if best["state"] is not None:
            checkpoint.load_model_state(model, best["state"])
        return {"train_s": train_time, "s_per_iter": train_time / max(iters, 1), "best_step": best["step"],
                "selected_on": select if best["state"] is not None else "final"}

    def selection_split(self) -> str:
        """The split whose best overall accuracy chooses the evaluated weights (``train.select``), or
        ``final`` (the last weights) when there is none, e.g. ``val`` on a dataset without a val split."""
        name = self.spec["train.select"]
        split = None if name == "final" else getattr(self.dataset, name)
        return name if split is not None and len(split) else "final"


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


def follow_run(run: RunDir, dist: Dist) -> dict:
    """A rank other than 0: train in step with rank 0 on its slice of each batch; write nothing."""
    trainer = Trainer(run, dist=dist)
    if trainer.task.trainable():
        trainer.fit(lambda record: None)
    return {}


def train_run(run: RunDir, dist: Dist | None = None) -> dict:
    """Run one training job end to end and return its final status fields."""
    if dist is not None and not dist.main:
        return follow_run(run, dist)
    run.mark_running(pid=os.getpid(), host=socket.gethostname())
    trainer = Trainer(run, dist=dist)
    spec, device = trainer.spec, trainer.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def log(record: dict) -> None:
        record["ts"] = now()
        run.append(run.metrics_file, record)
        if "loss" in record:
            print(f"step {record['step']}/{spec['train.iters']} loss {record['loss']:.4f} lr {record['lr']:.3g}",
                  flush=True)
        for split in ("val", "test"):
            if f"{split}/overall" in record:
                print(f"step {record['step']} {split} overall {record[f'{split}/overall']:.2f}", flush=True)

    trained = bool(trainer.task.trainable())
    with SystemMonitor(lambda r: run.append(run.system_file, r), use_gpu=device.type == "cuda") as monitor:
        t_start = time.perf_counter()
        timing = trainer.fit(log) if trained else {"train_s": 0.0, "s_per_iter": None, "selected_on": "final"}
        if trained:
            run.ckpt_dir.mkdir(exist_ok=True)
            checkpoint.atomic_save(trainer.task.model.state_dict(), run.model_file)
        for split in ("val", "test"):
            if getattr(trainer.dataset, split) is not None and len(getattr(trainer.dataset, split)):
                result = trainer.evaluate(split)
                write_eval(run, split, result)
                print(f"{split}: " + " ".join(f"{k} {_pct(getattr(result, k))}"
                                               for k in ("overall", "many", "medium", "few")), flush=True)
        wall = time.perf_counter() - t_start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mib()
    model_params = sum(p.numel() for p in trainer.task.model.parameters())
    frozen_visual = sum(p.numel() for p in trainer.backbone.clip.visual.parameters())
    cost = monitor.summary(wall)
    cost.update(total_cost(run, wall, cost["energy_kwh"]))  # a resumed run adds its earlier segments
    return run.mark_finished(
        device=str(device),
        trainable_params=count_trainable(trainer.task.model),
        total_params=model_params + (0 if trainer.task.feature == "images" else frozen_visual),
        iters=spec["train.iters"] if trained else 0, batch_size=spec["train.batch_size"],
        peak_mem_mib=peak, stage=trainer.info.stage, parent_run_id=spec.get("stage1.run_id"),
        skipped_images=run.skipped_images(), weights=trainer.backbone.weights.describe(),
        **timing, **cost)
