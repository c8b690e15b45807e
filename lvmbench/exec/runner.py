"""``lvmbench run --headless``: validate, preflight, then a one-cell sweep through the scheduler; print."""
from __future__ import annotations

import signal
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from .. import catalog, config, paths
from ..data.summary import class_summary, describe_classes
from ..errors import UserError
from ..render import output
from ..runs import process
from ..runs.plan import SKIPPED, Job, plan
from ..runs.rundir import RunDir, check_run_id
from ..runs.scheduler import Reporter, Scheduler, group_members, resumable
from .local import LocalExecutor, Slot

console = output(stderr=True)


class Terminated(UserError):
    """SIGTERM reached ``lvmbench run`` (e.g. the UI's cancel key): the child was cancelled."""

    exit_code = 128 + signal.SIGTERM


class NotStored(UserError):
    """The run finished but could not be stored: its directory is kept, the command fails."""

    exit_code = 1


@contextmanager
def cancel_on_sigterm():
    """Turn SIGTERM into :class:`Terminated` so the running child is cancelled and recorded."""
    def handler(signum, frame):
        raise Terminated("cancelled by SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def preflight(spec: dict) -> dict:
    """Fail fast, in the parent, on a bad data path or backbone: nothing is created or stored. Returns
    the dataset's class summary (``classes.*``), which the caller records in the spec."""
    from ..data import build_dataset
    from ..models.backbone import ensure_weights

    dataset = build_dataset(spec)
    if config.class_names_needed(spec):
        dataset.require_class_names(config.class_names_needed(spec))
    ensure_weights(spec["backbone"], spec["pretrained"])
    check_decoder_heads(spec)
    summary = class_summary(dataset)
    if summary["classes.with_train"] < summary["classes.total"]:
        console.print(f"[yellow]warning:[/] {spec['dataset']}: {describe_classes(summary)}", soft_wrap=True)
    return summary


def check_device(want: str, decodes=()) -> None:
    """Refuse, before anything is created, to train on the CPU when NVML shows GPUs that torch cannot
    use (a torch build for a newer driver); ``train.device=cpu`` trains on the CPU on purpose. ``decodes``:
    the runs' ``data.decode``; ``cuda`` is refused where they would train on the CPU."""
    from ..train.gpus import check_usable, run_device

    check_usable(want)
    if "cuda" in decodes:
        from ..train.device_decode import decode_device

        decode_device("cuda", run_device(want))


def check_decoder_heads(spec: dict) -> None:
    """``decoder.heads`` must divide the width of the backbone's tokens (else the child would fail)."""
    import open_clip

    if catalog.method(spec["method"]).kind not in ("decoder", "stage2") or not spec["decoder.depth"]:
        return
    vision = (open_clip.get_model_config(spec["backbone"]) or {}).get("vision_cfg", {})
    if "width" not in vision or "timm_model_name" in vision:
        return  # a timm tower: the child checks
    width = vision["width"] * 32 if isinstance(vision.get("layers"), (list, tuple)) else vision["width"]
    if width % spec["decoder.heads"]:
        raise UserError(f"decoder.heads={spec['decoder.heads']}: must divide the token width {width} of "
                        f"{spec['backbone']}")


def check_store(runs_dir: Path, results: Path, ingest: bool = True) -> None:
    """Before anything is created: the runs folder and (when the run is to be stored) the results
    database must be writable, so that no training is wasted on a place that cannot hold it."""
    from ..store.db import check_is_duckdb

    paths.check_writable(runs_dir, "--runs-dir", folder=True)
    check_is_duckdb(results)
    if ingest:
        paths.check_writable(results, "--results", folder=False)


class Bars(Reporter):
    """A progress bar per run of a foreground ``lvmbench run``, and what its stage-1 run does."""

    def __init__(self, rich: Progress, label):
        self.rich, self.label, self.bars = rich, label, {}

    def started(self, job: Job) -> None:
        self.bars[job.hash] = self.rich.add_task(escape(self.label(job)), total=job.spec["train.iters"])

    def progress(self, job: Job, step: int) -> None:
        if job.hash in self.bars:
            self.rich.update(self.bars[job.hash], completed=step)

    def waiting(self, job: Job) -> None:
        console.print("stage 1: another process is training it; waiting")

    def settled(self, job: Job) -> None:
        if job.state == SKIPPED and job.implicit:
            console.print(Text(f"stage 1: reusing {job.run.run_id}"))
        elif job.hash in self.bars:
            self.progress(job, job.run.last_step())


def schedule(jobs: list[Job], runs_dir: Path, results: Path, label, debug: bool = False, ingest: bool = True,
             nproc: int = 1, fuse: bool = True) -> Scheduler:
    """Train ``jobs`` here, one child at a time, through the scheduler (a progress bar per run); the
    asked-for runs train anew (``fresh``), a stage-1 run is shared with other processes. Each child
    claims free GPUs when it starts (see :func:`lvmbench.runs.devices.place`)."""
    executor = LocalExecutor([Slot("here", place=True)], nproc, debug, say=console.print)
    scheduler = Scheduler(executor, runs_dir, results, fuse=fuse, ingest=ingest, fresh=True)
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        scheduler.reporter = Bars(progress, label)
        scheduler.run(jobs)
    return scheduler


def final_statuses(jobs: list[Job], scheduler: Scheduler) -> list[dict]:
    """Each job's run's final status (``not_stored``: why a finished run could not be stored)."""
    statuses = []
    for job in jobs:
        status = job.run.status()
        why = scheduler.not_stored.get(job.run.run_id)
        statuses.append({**status, "not_stored": why} if why else status)
    return statuses


def run_headless(dataset: str, backbone: str, method: str, seed: int, data_root: str | None,
                 pretrained: str | None, sets: list[str], runs_dir: Path, results: Path, debug: bool = False,
                 run_id: str | None = None, ingest: bool = True, nproc: int = 1, overrides: dict | None = None,
                 show: bool = True, fuse: bool = True) -> dict:
    """Resolve, preflight, train (stage 1 first when needed) and report one run, or one per method of a
    comma-separated list (fused into groups that train together unless ``fuse=False``): a one-cell
    sweep through the scheduler. ``run_id`` names the final run's directory (a stage-1 run gets its
    own id); ``ingest=False`` leaves the database to the caller (the UI is its only writer while it
    runs). ``overrides``: parsed settings under ``sets`` (a recipe file's or a stored run's);
    ``show=False`` prints nothing on stdout. Returns the status of the run, or of the first of several
    that did not finish."""
    methods = [m.strip() for m in method.split(",") if m.strip()] or [method]
    if run_id is not None and len(methods) > 1:
        raise UserError("--run-id names one run; drop it to train several methods")
    if run_id is not None:
        check_run_id(runs_dir, run_id)
    check_store(runs_dir, results, ingest)
    specs = [config.resolve(dataset, backbone, m, seed=seed, pretrained=pretrained, data_root=data_root,
                            overrides={**(overrides or {}), **config.parse_sets(sets)}) for m in methods]
    for spec in specs:
        config.check_nproc(spec, nproc)
    check_device(specs[0]["train.device"], [spec["data.decode"] for spec in specs])
    summaries = {}  # one preflight per set of class names the runs need
    for spec in specs:
        key = config.class_names_needed(spec)
        if key not in summaries:
            summaries[key] = preflight(spec)
        spec.update(summaries[key])
    jobs = plan(specs, runs_dir, fresh=True)  # each run after its stage-1 run if it needs one
    asked = [j for j in jobs if not j.implicit]
    for job in jobs:
        if job.implicit:
            job.spec.update({k: specs[0][k] for k in config.CLASS_KEYS})  # same data, same classes
        if job.implicit and job.state == SKIPPED:
            console.print(Text(f"stage 1: reusing {job.run.run_id}"))
    asked[0].run_id = run_id
    scheduler = schedule(jobs, runs_dir, results, lambda j: f"stage 1 ({j.spec['method']})" if j.implicit
                         else j.spec["method"], debug, ingest, nproc, fuse)
    for job in jobs:
        if job.implicit and job.state not in ("finished", SKIPPED):
            status = job.run.status() if job.run else {"status": job.state, "error": job.error}
            raise UserError(f"stage-1 run {status.get('run_id')} {status.get('status')}: {status.get('error')}")
    statuses = final_statuses(asked, scheduler)
    for job, status in zip(asked, statuses if show else ()):
        print_outcome(job.run, status, results)
    for job, status in zip(asked, statuses):
        check_stored(job.run, status, results)
    return next((s for s in statuses if s.get("status") != "finished"), statuses[0])


def resume_headless(run_id: str, runs_dir: Path, results: Path, debug: bool = False, ingest: bool = True,
                    nproc: int = 1, show: bool = True) -> dict:
    """Continue a killed, failed or cancelled run in its own directory from its last checkpoint
    (``ckpt/last.pt``; from the start when it has none), then ingest and report it. A member of a
    fused group continues together with the members that ended as it did (each owned, like the run)."""
    check_store(runs_dir, results, ingest)
    run, owner = resumable(runs_dir, run_id)
    owners = [owner]
    try:
        runs = group_members(runs_dir, run)
        for member in runs[1:]:
            owners.append(process.own(member))
        for member in runs:
            config.check_nproc(member.spec(), nproc)
        check_device(run.spec().get("train.device", "auto"),
                     [member.spec().get("data.decode") for member in runs])
        preflight(run.spec())
    except BaseException:
        process.release_owners(owners)
        raise
    jobs = [Job(member.spec(), member.run_id, run=member, owner=lock) for member, lock in zip(runs, owners)]
    scheduler = schedule(jobs, runs_dir, results, lambda j: f"resume {j.spec['method']}", debug, ingest, nproc)
    statuses = final_statuses(jobs, scheduler)
    for member, status in zip(runs, statuses if show else ()):
        print_outcome(member, status, results)
    for member, status in zip(runs, statuses):
        check_stored(member, status, results)
    return statuses[0]


def check_stored(run: RunDir, status: dict, results: Path) -> None:
    """A finished run that could not be stored fails its command (exit 1); its directory is kept."""
    if status.get("status") == "finished" and status.get("not_stored"):
        raise NotStored(f"run {run.run_id} finished but is not stored in {results}: {status['not_stored']}; "
                        f"its directory {run.path} is kept")


COST_KEYS = ("wall_s", "s_per_iter", "peak_mem_mib", "avg_power_w", "energy_kwh", "trainable_params", "device",
             "gpu_name")


def outcome_json(runs_dir: Path, status: dict) -> dict:
    """What ``run --json`` prints: the run's id, status, evaluations and cost, as one object."""
    run = RunDir(Path(runs_dir) / status["run_id"])
    spec = run.spec()
    return {"run_id": run.run_id, "status": status.get("status"), "error": status.get("error"),
            "run_dir": str(run.path), "config_hash": spec.get("config_hash"),
            "stage1_run_id": spec.get("stage1.run_id"),
            "evaluations": {split: run.evaluation(split) for split in ("val", "test") if run.evaluation(split)},
            "cost": {k: status.get(k) for k in COST_KEYS}}


def print_outcome(run: RunDir, status: dict, results: Path | None = None) -> None:
    """The run's test figures, or why it stopped and how to continue it."""
    from ..render import render

    out = output()
    if status.get("status") != "finished":
        out.print(Text.assemble((f"run {run.run_id} {status.get('status')}:", "red"), f" {status.get('error')}"),
                  soft_wrap=True)
        out.print(Text(f"log: {run.log_file}"), soft_wrap=True)
        out.print(Text("continue it (once the cause is fixed): "
                       + paths.resume_command(run.run_id, run.path.parent, results)), soft_wrap=True)
        return
    test = run.evaluation("test") or {}
    cols = ["overall", "many", "medium", "few", "precision", "recall", "f1", "worst"]
    values = [test.get(c if c != "worst" else "worst_class") for c in cols]
    render(cols, [values], title=f"{run.run_id} — test (%)", console=out)
    if "classes.total" in run.spec():
        out.print(f"data: {describe_classes(run.spec())}", highlight=False, soft_wrap=True)
    if status.get("weights"):
        out.print(f"weights: {status['weights']}", highlight=False, soft_wrap=True)
    if status.get("s_per_iter"):
        out.print(f"s/iter {status['s_per_iter']:.4f} · peak {status.get('peak_mem_mib', 0):.0f} MiB · "
                  f"wall {status.get('wall_s', 0):.1f} s")
