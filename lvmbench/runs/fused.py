"""Fused training groups: which runs can train in one process over one tower pass per step.

Runs that see the same images in the same order with the same augmentations -- same dataset,
backbone and weights, seed, recipe, sampler, batch size, iterations, input settings and, for
stage 2, the same stage-1 run -- compute the same frozen-tower outputs at every step. A fused
group trains them together (``lvmbench.train.loop.train_group``): the tower runs once, then each
member takes its own step with its own model, loss, optimizer and RNG streams, so that it ends
bit-identical (on a CPU) to training alone. Each member stays a run of its own.

Which settings a member may have of its own is an allow-list: anything not listed here (including
a setting added later) must agree, so a new setting can split groups but never fuse runs that
should not be. Torch-free: the planner and the UI import it.
"""
from __future__ import annotations

import json
import secrets
import time

from .. import catalog
from .devices import group_cap

# Settings that change only a member's own model, loss, optimizer, schedule or bookkeeping.
MEMBER_KEYS = frozenset({
    "method", "loss", "train.lr", "train.momentum", "train.nesterov", "train.weight_decay", "train.warmup_iters",
    "train.optimizer", "train.eval_every", "train.log_every", "train.precision", "train.compile",
    "decoder.depth", "decoder.heads", "decoder.mlp_ratio", "head.kind", "head.scale", "head.init",
    # run metadata, not settings
    "config_hash", "result_group", "git_sha", "sweep_id", "fused_group", "fused_size",
})
MEMBER_PREFIXES = ("loss.",)
# Methods whose model reads the frozen tower's tokens and trains on the whole training split.
FUSABLE_KINDS = ("decoder", "stage2")
# The most runs one process trains together (each member keeps its own model and optimizer in memory,
# and a member's failure ends none of the others, but a crash of the process ends them all).
MAX_MEMBERS = 16


def group_key(spec: dict) -> str | None:
    """What a run shares with the other members of its group, as text; None: it trains alone."""
    info = catalog.method(spec["method"])
    if info.kind not in FUSABLE_KINDS:
        return None
    shared = {k: v for k, v in spec.items() if k not in MEMBER_KEYS and not k.startswith(MEMBER_PREFIXES)}
    shared["_sampler"], shared["_stage"] = info.sampler, info.stage
    return json.dumps(shared, sort_keys=True, default=str)


def partition(specs: list[dict], fuse: bool = True, free_slots: int | None = None) -> list[list[int]]:
    """The indices of ``specs`` grouped into fused groups of at most :data:`MAX_MEMBERS`, in order of
    first appearance; runs that cannot fuse (or all of them, with ``fuse=False``) are groups of one.
    ``free_slots``: a group takes at most ⌈its runs / free slots⌉ (``lvmbench.runs.devices.group_cap``),
    so that every free slot gets work; the rest form further groups."""
    groups: dict[str, list[int]] = {}
    out: list[list[int]] = []
    for i, spec in enumerate(specs):
        key = group_key(spec) if fuse else None
        if key is None:
            out.append([i])
        elif key in groups and len(groups[key]) < MAX_MEMBERS:
            groups[key].append(i)
        else:
            groups[key] = [i]  # a full group leaves its key to the next one
            out.append(groups[key])
    if free_slots is None:
        return out
    caps = [group_cap(len(g), free_slots) for g in out]
    return [g[i:i + cap] for g, cap in zip(out, caps) for i in range(0, len(g), cap)]


def new_group_id() -> str:
    return f"fuse-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
