"""Follow a run directory while its child writes it: read only what is new, whole lines only.

A worker thread calls :meth:`RunFollower.poll` and posts the :class:`RunUpdate` it returns; the UI
thread folds updates into a :class:`LiveData` (the series the Live screen plots). Standard library only.
"""
from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from lvmbench.runs.rundir import RunDir

LOG_START_BYTES = 64 * 1024  # a long log is followed from its last 64 KiB
LOG_LINES = 300


class Tail:
    """The complete lines appended to a file since the last call (handles truncation and replacement)."""

    def __init__(self, path: Path, start_bytes: int | None = None):
        self.path, self.start_bytes = Path(path), start_bytes
        self.offset, self.partial, self.inode = 0, b"", None

    def read_lines(self) -> list[str]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return []
        skip_first = False
        if st.st_ino != self.inode or st.st_size < self.offset:
            self.offset, self.partial, self.inode = 0, b"", st.st_ino
            if self.start_bytes is not None and st.st_size > self.start_bytes:
                self.offset, skip_first = st.st_size - self.start_bytes, True
        if st.st_size == self.offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(st.st_size - self.offset)
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        if skip_first and lines:
            lines = lines[1:]  # started mid-line
        return [line.decode(errors="replace").split("\r")[-1] for line in lines]

    def read_records(self) -> list[dict]:
        """The new lines parsed as JSON objects (a corrupt line is skipped)."""
        return json_lines(self.read_lines(), dict)


def json_lines(lines: list[str], kind: type) -> list:
    """The lines that parse as JSON values of ``kind``; the others (a corrupt or cut line) are skipped."""
    out = []
    for line in lines:
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, kind):
            out.append(value)
    return out


@dataclass
class RunUpdate:
    """What changed in one run directory since the previous poll."""

    run_id: str
    metrics: list[dict] = field(default_factory=list)
    system: list[dict] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    status: dict | None = None
    spec: dict | None = None

    def __bool__(self) -> bool:
        return bool(self.metrics or self.system or self.log or self.status is not None or self.spec is not None)


class RunFollower:
    """Incremental reader of one run directory (metrics, system, stdout.log, status, spec)."""

    def __init__(self, run: RunDir):
        self.run = run
        self.metrics, self.system = Tail(run.metrics_file), Tail(run.system_file)
        self.log = Tail(run.log_file, start_bytes=LOG_START_BYTES)
        self.status_mtime: float | None = None
        self.spec_seen = False

    def poll(self) -> RunUpdate:
        update = RunUpdate(self.run.run_id, self.metrics.read_records(), self.system.read_records(),
                           self.log.read_lines())
        if not self.spec_seen and self.run.spec_file.exists():
            try:
                update.spec, self.spec_seen = self.run.spec(), True
            except (OSError, json.JSONDecodeError):
                pass
        try:
            mtime = self.run.status_file.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime is not None and mtime != self.status_mtime:
            self.status_mtime = mtime
            update.status = self.run.status()
        return update


RATE_WINDOW = 20  # the ETA's rate: over the last RATE_WINDOW logged training steps
MAX_POINTS = 2000  # a plotted series keeps between MAX_POINTS and 2 * MAX_POINTS points, evenly spaced


@dataclass
class Series:
    """The points of one plotted line. A long run is thinned as it grows (every other point dropped
    whenever 2 * MAX_POINTS are held, and from then on every ``stride``-th point kept), so a 100k-step
    run plots as fast as a short one."""

    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    stride: int = 1
    added: int = 0

    def add(self, x: float, y) -> None:
        if isinstance(y, (int, float)) and not isinstance(y, bool):
            self.added += 1
            if (self.added - 1) % self.stride:
                return
            self.x.append(x)
            self.y.append(float(y))
            if len(self.x) >= 2 * MAX_POINTS:
                self.x, self.y, self.stride = self.x[::2], self.y[::2], self.stride * 2


@dataclass
class LiveData:
    """Everything the Live screen shows about one run, folded from successive :class:`RunUpdate`s."""

    run_id: str
    iters: int | None = None
    status: dict = field(default_factory=dict)
    loss: Series = field(default_factory=Series)
    lr: Series = field(default_factory=Series)
    val_overall: Series = field(default_factory=Series)
    val_few: Series = field(default_factory=Series)
    mem: Series = field(default_factory=Series)
    power: Series = field(default_factory=Series)
    gpu: bool = False
    log: deque = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    _t0: float | None = None
    _recent: deque = field(default_factory=lambda: deque(maxlen=RATE_WINDOW))  # (step, ts) of this segment
    _last: tuple[int, float] | None = None
    _previous: tuple[int, float] | None = None  # the training record before the last
    loader_wait_s: float | None = None  # the last record's mean wait per step for the training images

    def apply(self, update: RunUpdate) -> None:
        if update.spec:
            self.iters = update.spec.get("train.iters")
        if update.status is not None:
            self.status = update.status
        for rec in update.metrics:
            step = rec.get("step")
            if step is None:
                continue
            if "loss" in rec:
                self.loss.add(step, rec["loss"])
                self.lr.add(step, rec.get("lr"))
                if isinstance(rec.get("ts"), (int, float)):
                    self._step_at(int(step), float(rec["ts"]))
                self.loader_wait_s = rec.get("loader_wait_s")
            self.val_overall.add(step, rec.get("val/overall"))
            self.val_few.add(step, rec.get("val/few"))
        for ts, mem, power, gpu in _per_sample(update.system):
            self._t0 = ts if self._t0 is None else self._t0
            self.gpu = self.gpu or gpu
            self.mem.add(ts - self._t0, mem)
            self.power.add(ts - self._t0, power)
        self.log.extend(update.log)

    def _step_at(self, step: int, ts: float) -> None:
        """A training step logged at ``ts``. The rate is read from the last steps of the run's current
        segment: a step back (a resumed run redoing steps after its checkpoint) or a record older than
        the segment's start (``started_at``) starts the window again."""
        started = self.status.get("started_at")
        earlier = isinstance(started, (int, float)) and ts < started
        if earlier or (self._last and step <= self._last[0]):
            self._recent.clear()
        self._previous, self._last = self._last, (step, ts)
        if not earlier:
            self._recent.append(self._last)

    @property
    def step(self) -> int:
        return self._last[0] if self._last else 0

    def eta_s(self) -> float | None:
        """Seconds left at the step rate of the last :data:`RATE_WINDOW` steps of the current segment; with one
        step logged, at the rate since the segment started (a run that was never resumed: it starts at step 0)."""
        if not (self.iters and self._recent):
            return None
        (first_step, first_ts), (step, ts) = self._recent[0], self._recent[-1]
        if step > first_step:
            rate = (ts - first_ts) / (step - first_step)
        elif isinstance(self.status.get("started_at"), (int, float)) and not self.status.get("resumes") and step:
            rate = max(0.0, ts - self.status["started_at"]) / step
        else:
            return None
        return max(0, self.iters - step) * rate

    def loader_wait(self) -> tuple[float, float | None] | None:
        """(seconds a step waited for its images, that wait's share of a step between the last two
        training records or None), from the last record; None when the run logs no loader wait."""
        if not isinstance(self.loader_wait_s, (int, float)):
            return None
        (s0, t0), (s1, t1) = self._previous or (0, 0.0), self._last or (0, 0.0)
        step_s = (t1 - t0) / (s1 - s0) if self._previous and s1 > s0 else None
        return self.loader_wait_s, min(1.0, self.loader_wait_s / step_s) if step_s else None


def _per_sample(records: list[dict]):
    """Sum GPU memory and power over the GPUs sampled at the same time: (ts, MiB, W, on_gpu)."""
    by_ts: dict[float, list[dict]] = {}
    for r in records:
        if isinstance(r.get("ts"), (int, float)):
            by_ts.setdefault(float(r["ts"]), []).append(r)
    for ts in sorted(by_ts):
        rs = by_ts[ts]
        mem = [r["mem_mib"] for r in rs if r.get("mem_mib") is not None]
        power = [r["power_w"] for r in rs if r.get("power_w") is not None]
        yield ts, (sum(mem) if mem else None), (sum(power) if power else None), \
            any(r.get("gpu_index") is not None for r in rs)


def format_seconds(seconds: float | None) -> str:
    """``1:02:03`` / ``2:03``; ``–`` when unknown."""
    if seconds is None:
        return "–"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
