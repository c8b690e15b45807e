"""A sweep's grid: expand dataset × backbone × pretrained × method × settings × seed into run specs, then plan
the jobs — dependencies on shared stage-1 runs, and what is already finished. Torch-free.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from .. import config, launch
from ..errors import UserError
from ..rundir import RunDir

# Job states: ``done`` was finished before this sweep (skipped); ``blocked`` never started
# because its stage-1 run did not finish.
PENDING, RUNNING, DONE, BLOCKED = "pending", "running", "done", "blocked"
SETTLED = (DONE, BLOCKED, "finished", "failed", "killed", "cancelled")


@dataclass
class Axes:
    """The axes of a grid; ``pretrained`` None means each backbone's default weights."""

    datasets: list[str]
    backbones: list[str]
    methods: list[str]
    seeds: list[int]
    pretrained: list[str | None] = field(default_factory=lambda: [None])
    sets: dict = field(default_factory=dict)
    data_roots: dict[str, str] = field(default_factory=dict)  # dataset -> root ("*" for any)
    variants: list[dict] = field(default_factory=lambda: [{}])  # settings swept as a grid, over ``sets``

    def size(self) -> int:
        return (len(self.datasets) * len(self.backbones) * len(self.pretrained) * len(self.methods)
                * len(self.seeds) * len(self.variants))


def expand(axes: Axes) -> list[dict]:
    """Every run spec of the grid, validated (an invalid combination fails before anything runs)."""
    if not axes.size():
        raise UserError("the grid is empty: give at least one dataset, backbone, method and seed")
    specs = []
    for ds, bb, pt, method, variant, seed in itertools.product(axes.datasets, axes.backbones, axes.pretrained,
                                                               axes.methods, axes.variants, axes.seeds):
        root = axes.data_roots.get(ds, axes.data_roots.get("*"))
        specs.append(config.resolve(ds, bb, method, seed=seed, pretrained=pt, data_root=root,
                                    overrides={**axes.sets, **variant}))
    return specs


@dataclass
class Job:
    """One run of a sweep: its spec, the stage-1 job it waits for, its run directory once known."""

    spec: dict
    hash: str
    needs: str | None = None  # config hash of the stage-1 job this job waits for
    implicit: bool = False  # not in the grid: added because a two-stage run needs it
    run: RunDir | None = None
    state: str = PENDING
    error: str | None = None

    @property
    def label(self) -> str:
        s = self.spec
        weights = "" if s["pretrained"] in ("openai", "embedded") else f" ({s['pretrained']})"
        return f"{s['dataset']} {s['backbone']}{weights} {s['method']} s{s['seed']}"


def plan(specs: list[dict], runs_dir) -> list[Job]:
    """The jobs of a grid in start order: duplicates merged, each two-stage run after the stage-1
    ``ce`` run it shares with the others of its seed (the grid's own ``ce`` run when it holds one),
    and runs already finished with the same config hash marked ``done``."""
    jobs: dict[str, Job] = {}
    for spec in specs:
        h = config.config_hash(spec)
        jobs.setdefault(h, Job(spec, h))
    for job in list(jobs.values()):
        if launch.needs_stage1(job.spec):
            stage1 = launch.stage1_spec(job.spec)
            h1 = config.config_hash(stage1)
            jobs.setdefault(h1, Job(stage1, h1, implicit=True))
            job.needs = h1
    finished, interrupted = launch.finished_runs(runs_dir), launch.interrupted_runs(runs_dir)
    for job in jobs.values():
        if job.hash in finished:
            job.run, job.state = finished[job.hash], DONE
        elif job.hash in interrupted:
            job.run = interrupted[job.hash]  # pending with a run: continues it from its checkpoint
    return sorted(jobs.values(), key=lambda j: j.needs is not None)  # stable: grid order otherwise


def ready(job: Job, by_hash: dict[str, Job]) -> bool | None:
    """True when ``job`` can start, False while its stage-1 job is unsettled, None when it never can."""
    if job.needs is None:
        return True
    parent = by_hash[job.needs]
    if parent.state in (DONE, "finished"):
        return True
    return False if parent.state not in SETTLED else None


def stage1_id(job: Job, by_hash: dict[str, Job]) -> str | None:
    """The run id a two-stage job starts from (its stage-1 job's run directory)."""
    return by_hash[job.needs].run.run_id if job.needs else None
