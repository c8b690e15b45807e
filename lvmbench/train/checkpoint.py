"""Training checkpoints: everything a run needs to continue exactly where it stopped.

``ckpt/last.pt`` holds the trainable part of the model (its trainable parameters and its buffers),
the optimizer, the scheduler, the loss's buffers, the step, the best-so-far (validation score,
step and weights), the training time so far and the RNG states of torch, numpy and Python. The
batch stream is a pure function of (seed, step) (``batches.StepBatchSampler``), so nothing else
is needed. Files are written atomically: temporary file, fsync, rename, fsync of the folder; a
kill at any moment leaves either the previous checkpoint or the new one, never half of one.
"""
from __future__ import annotations

import errno
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..paths import is_no_space, no_space

FORMAT = 1


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        if is_no_space(exc):  # torch's own words for it are "unexpected pos"
            raise OSError(errno.ENOSPC, no_space(path)) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a power cut
    finally:
        os.close(fd)


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The part of ``model`` that training changes: trainable parameters and all buffers (copies)."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    buffers = {name for name, _ in model.named_buffers()}
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k in trainable or k in buffers}


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load what :func:`model_state` saved; the frozen rest of ``model`` is left as built."""
    unexpected = model.load_state_dict(state, strict=False).unexpected_keys
    if unexpected:
        raise UserError(f"checkpoint does not fit this model: unexpected {', '.join(unexpected[:3])}")


def rng_state() -> dict:
    """The RNG states of torch, numpy, Python and, on a GPU, of the process's own device only (the
    current one: a rank's, see ``distributed.setup``), so a run resumes where fewer GPUs are visible."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, (list, tuple)):  # a checkpoint of an older lvmbench: one state per visible GPU
            own = torch.cuda.current_device()
            cuda = cuda[own] if own < len(cuda) else cuda[0]
        torch.cuda.set_rng_state(cuda)


def save(path: Path, *, step: int, model: nn.Module, optimizer, scheduler, loss: nn.Module | None,
         best: dict, train_s: float) -> None:
    """Write the training state after ``step`` steps (``best``: val_overall, step, state)."""
    atomic_save({"format": FORMAT, "step": step, "model": model_state(model), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "loss": loss.state_dict() if loss is not None else None,
                 "best": best, "train_s": train_s, "rng": rng_state()}, path)


def load(path: Path, *, model: nn.Module, optimizer, scheduler, loss: nn.Module | None) -> dict | None:
    """Restore a saved training state into the given objects; return ``{step, best, train_s}``,
    or None when there is no checkpoint (a fresh start)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a torn or foreign file is reported as one line
        raise UserError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not an lvmbench training checkpoint")
    load_model_state(model, ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if loss is not None and ckpt["loss"] is not None:
        loss.load_state_dict(ckpt["loss"])
    set_rng_state(ckpt["rng"])
    return {"step": ckpt["step"], "best": ckpt["best"], "train_s": ckpt["train_s"]}
