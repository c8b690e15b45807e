"""One planner for ``lvmbench run`` (a one-cell plan) and ``lvmbench sweep``: the jobs of a set of
specs in start order — each two-stage run after the stage-1 ``ce`` run it shares with the others of
its seed — with the runs already finished marked skipped, and the run directory each job starts in.

Concurrent planners over one runs folder share the work: a job is started only by the process that
holds its configuration's claim (``rundir.claim``), and one that another process finished meanwhile
is skipped.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from .. import catalog, config
from .rundir import INTERRUPTED, Lock, RunDir, claim, list_runs

# Job states besides a run's own statuses: ``skipped`` was finished before this process started it;
# ``blocked`` never started because its stage-1 run did not finish.
PENDING, RUNNING, SKIPPED, BLOCKED = "pending", "running", "skipped", "blocked"
SETTLED = (SKIPPED, BLOCKED, "finished", "failed", "killed", "cancelled")

STAGE1_METHOD = "ce"
# Every setting of a two-stage run is shared with its stage-1 run but these: so a grid's own ``ce``
# run (same --set) is the stage-1 run of its two-stage runs.
# ``train.decay_params`` is one of them: under recipe=reference only stage 2 decays every parameter.
STAGE1_OWN = ("loss", "stage1.run_id", "train.decay_params")


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def prepare(spec: dict, runs_dir: Path, sweep_id: str | None = None, run_id: str | None = None,
            fused_group: str | None = None, fused_size: int = 1) -> RunDir:
    """Create the run directory (status ``queued``) with the full resolved spec (and, for a member
    of a fused group, the group's id and size)."""
    spec = {**spec, "config_hash": config.config_hash(spec), "result_group": config.result_group(spec),
            "git_sha": git_sha(), "sweep_id": sweep_id}
    if fused_group:
        spec.update(fused_group=fused_group, fused_size=fused_size)
    return RunDir.create(Path(runs_dir), spec, run_id=run_id)


def prepare_group(specs: list[dict], runs_dir: Path, sweep_id: str | None = None) -> list[RunDir]:
    """The run directories of specs that train together (one fused group; one spec: a plain run)."""
    from ..fused import new_group_id

    group = new_group_id() if len(specs) > 1 else None
    return [prepare(s, runs_dir, sweep_id, fused_group=group, fused_size=len(specs)) for s in specs]


def finished_runs(runs_dir: Path) -> dict[str, RunDir]:
    """The latest finished run of each config hash (lets sweeps skip done work), a run made before
    some default was resolved into specs by the hash of what it computed (``config.regrouped``)."""
    return {config.regrouped(spec)["config_hash"]: r for r in list_runs(runs_dir)
            if r.state() == "finished" and (spec := r.spec_or_none()) is not None}


def interrupted_runs(runs_dir: Path) -> dict[str, RunDir]:
    """The latest killed or cancelled run of each config hash that left a checkpoint: a sweep run
    again continues it in its directory instead of starting it over."""
    from .process import recover

    out = {}
    for run in list_runs(runs_dir):
        if recover(run).get("status") in INTERRUPTED and run.checkpoint_file.exists():
            spec = run.spec_or_none()
            if spec is not None:
                out[config.regrouped(spec)["config_hash"]] = run
    return out


def start_or_continue(run: RunDir | None, spec: dict, runs_dir: Path, sweep_id: str | None = None) -> RunDir:
    """A job's run directory: the interrupted run it continues (reopened), else a new one."""
    if run is not None:
        run.reopen()
        return run
    return prepare(spec, runs_dir, sweep_id)


def find_finished(runs_dir: Path, config_hash: str) -> RunDir | None:
    """The latest finished run with this config hash, if any."""
    return finished_runs(runs_dir).get(config_hash)


def stage1_spec(spec: dict) -> dict:
    """The stage-1 (``ce``) spec a two-stage run starts from: same data, backbone, seed and recipe."""
    shared = {k: v for k, v in spec.items() if k in config.SCHEMA and k not in STAGE1_OWN}
    return config.resolve(spec["dataset"], spec["backbone"], STAGE1_METHOD, seed=spec["seed"],
                          pretrained=spec["pretrained"], data_root=spec["data_root"], overrides=shared)


def needs_stage1(spec: dict) -> bool:
    return catalog.method(spec["method"]).stage == 2 and not spec.get("stage1.run_id")


@dataclass
class Job:
    """One run of a plan: its spec, the stage-1 job it waits for, its run directory once known."""

    spec: dict
    hash: str
    needs: str | None = None  # config hash of the stage-1 job this job waits for
    implicit: bool = False  # not asked for: added because a two-stage run needs it
    run: RunDir | None = None
    state: str = PENDING
    error: str | None = None
    claim: Lock | None = None  # held while this process trains the job

    @property
    def label(self) -> str:
        s = self.spec
        weights = "" if s["pretrained"] in ("openai", "embedded") else f" ({s['pretrained']})"
        return f"{s['dataset']} {s['backbone']}{weights} {s['method']} s{s['seed']}"


def plan(specs: list[dict], runs_dir, fresh: bool = False) -> list[Job]:
    """The jobs of ``specs`` in start order: duplicates merged, each two-stage run after its stage-1
    job, and runs already finished with the same config hash marked ``skipped`` — all of them, or
    with ``fresh`` (``lvmbench run``: the asked-for runs always train anew) only the stage-1 ones."""
    jobs: dict[str, Job] = {}
    for spec in specs:
        h = config.config_hash(spec)
        jobs.setdefault(h, Job(spec, h))
    for job in list(jobs.values()):
        if needs_stage1(job.spec):
            stage1 = stage1_spec(job.spec)
            h1 = config.config_hash(stage1)
            jobs.setdefault(h1, Job(stage1, h1, implicit=True))
            job.needs = h1
    finished = finished_runs(runs_dir)
    interrupted = {} if fresh else interrupted_runs(runs_dir)
    for job in jobs.values():
        if job.hash in finished and (job.implicit or not fresh):
            job.run, job.state = finished[job.hash], SKIPPED
        elif job.hash in interrupted:
            job.run = interrupted[job.hash]  # pending with a run: continues it from its checkpoint
    return sorted(jobs.values(), key=lambda j: j.needs is not None)  # stable: given order otherwise


def ready(job: Job, by_hash: dict[str, Job]) -> bool | None:
    """True when ``job`` can start, False while its stage-1 job is unsettled, None when it never can."""
    if job.needs is None:
        return True
    parent = by_hash[job.needs]
    if parent.state in (SKIPPED, "finished"):
        return True
    return False if parent.state not in SETTLED else None


def stage1_id(job: Job, by_hash: dict[str, Job]) -> str | None:
    """The run id a two-stage job starts from (its stage-1 job's run directory)."""
    return by_hash[job.needs].run.run_id if job.needs else None


def start_spec(job: Job, by_hash: dict[str, Job], threads: int = 0) -> dict:
    """The spec a job's run directory gets: its stage-1 run id, and its share of the CPU."""
    spec = dict(job.spec)
    if job.needs:
        spec["stage1.run_id"] = stage1_id(job, by_hash)
    if threads and not spec.get("train.threads"):
        spec["train.threads"] = threads
    return spec


def block(job: Job, by_hash: dict[str, Job]) -> None:
    parent = by_hash[job.needs]
    job.state = BLOCKED
    job.error = f"stage-1 run {parent.label} {parent.state}"


def take(job: Job, runs_dir: Path) -> bool:
    """Claim ``job`` for this process before starting it: False while another process trains the
    same configuration; a job that another process finished meanwhile becomes ``skipped`` (True)."""
    lock = claim(runs_dir, job.hash)
    if not lock.acquire():
        return False
    done = find_finished(runs_dir, job.hash)
    if done is not None:
        lock.release()
        job.run, job.state = done, SKIPPED
        return True
    job.claim = lock
    return True


def settle(job: Job, status: dict) -> None:
    """Record a job's final status and give its claim back."""
    job.state, job.error = status.get("status"), status.get("error")
    if job.claim:
        job.claim.release()
        job.claim = None
