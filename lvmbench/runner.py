"""``lvmbench run --headless``: validate, train the stage-1 run if needed, run, ingest, print."""
from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from . import catalog, config, paths
from .data.summary import class_summary, describe_classes
from .errors import UserError
from .runs import devices, process
from .runs.plan import SKIPPED, Job, plan, prepare, prepare_group, ready, settle, start_spec, take
from .runs.rundir import Lock, RunDir, check_run_id

console = Console(stderr=True)


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
    from .data import build_dataset
    from .models.backbone import ensure_weights

    dataset = build_dataset(spec)
    if config.class_names_needed(spec):
        dataset.require_class_names(config.class_names_needed(spec))
    ensure_weights(spec["backbone"], spec["pretrained"])
    check_decoder_heads(spec)
    summary = class_summary(dataset)
    if summary["classes.with_train"] < summary["classes.total"]:
        console.print(f"[yellow]warning:[/] {spec['dataset']}: {describe_classes(summary)}", soft_wrap=True)
    return summary


def check_device(want: str) -> None:
    """Refuse, before anything is created, to train on the CPU when NVML shows GPUs that torch cannot
    use (a torch build for a newer driver); ``train.device=cpu`` trains on the CPU on purpose."""
    from .train.gpus import check_usable

    check_usable(want)


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
    from .store.db import check_is_duckdb

    paths.check_writable(runs_dir, "--runs-dir", folder=True)
    check_is_duckdb(results)
    if ingest:
        paths.check_writable(results, "--results", folder=False)


def ingest_quietly(results: Path, *runs: RunDir) -> str | None:
    """Ingest runs; a database that cannot be opened or written costs nothing (the run directories
    stay): warn, and return why the last of ``runs`` was not stored (None once it is)."""
    from .store import open_writer, pending
    from .store.ingest import ingest_runs

    if not runs:
        return None
    try:
        with open_writer(results) as con:
            # a bad run never keeps the others out; runs that found the database busy come along
            skipped = ingest_runs(con, [*pending.waiting(results), *runs]).skipped
        pending.clear(results)
    except (UserError, OSError) as exc:
        pending.remember(results, runs)
        where = runs[0].path if len(runs) == 1 else runs[0].path.parent
        skipped = [(where, str(exc))]
        hint = f"the next run stored in {results} stores it too; or later: lvmbench ingest {where} --results {results}"
    else:
        hint = None
    for where, why in skipped:
        console.print("[yellow]warning:[/] " + escape(f"kept in {where} but not stored: {why} "
                                                      f"({hint or f'later: lvmbench ingest {where} --results {results}'})"),
                      soft_wrap=True)
    last = runs[-1].path
    return next((why for where, why in skipped if Path(where) in (last, last.parent)), None)


def execute(spec: dict, runs_dir: Path, results: Path, debug: bool = False, label: str | None = None,
            run_id: str | None = None, ingest: bool = True, nproc: int = 1, resume: RunDir | None = None,
            owner: Lock | None = None) -> dict:
    """Run one prepared spec in a child (``nproc`` processes: torchrun) with a progress bar; ingest it
    (unless told not to, or it failed on bad input); return its final status. ``resume``: continue
    that run in its own directory instead of creating one (``owner``: its lock, already held)."""
    run = resume or prepare(spec, runs_dir, run_id=run_id)
    return execute_group([run], results, debug, [label or run.run_id], ingest, nproc, [owner])[0]


def execute_group(runs: list[RunDir], results: Path, debug: bool = False, labels: list[str] | None = None,
                  ingest: bool = True, nproc: int = 1, owners: list[Lock | None] = ()) -> list[dict]:
    """Train prepared runs in one child, as one fused group (one run: a plain run), a progress bar
    each; ingest each (unless told not to, or it failed on bad input); return their final statuses
    (``not_stored``: why a finished run could not be stored). ``owners``: the runs' locks already
    held (the others are taken here)."""
    if not ingest:  # the caller stores them (the UI; a UI started later finds and stores them too)
        for run in runs:
            run.note(stored_by="caller")
    owners = list(owners)
    env, claims = devices.place(runs[0].spec().get("train.device", "auto"), nproc, say=console.print)
    try:
        proc = process.spawn(runs[0], env, debug=debug, nproc=nproc, owner=owners[0] if owners else None,
                             members=runs[1:], member_owners=owners[1:], claims=claims)
    except BaseException:
        process.release_owners(claims)
        raise
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        bars = [progress.add_task(escape(label), total=run.spec()["train.iters"])
                for run, label in zip(runs, labels or [r.run_id for r in runs])]

        def show(steps: list[int]) -> None:
            for bar, step in zip(bars, steps):
                progress.update(bar, completed=step)

        try:
            statuses = process.wait_group(proc, runs, show)
        except (KeyboardInterrupt, Terminated):
            process.cancel_group(runs, proc)
            if ingest:
                ingest_quietly(results, *runs)
            raise
    if ingest:
        for i, (run, status) in enumerate(zip(runs, statuses)):
            if not status.get("user_error"):
                why = ingest_quietly(results, run)
                if why:
                    statuses[i] = {**status, "not_stored": why}
    return statuses


def run_headless(dataset: str, backbone: str, method: str, seed: int, data_root: str | None,
                 pretrained: str | None, sets: list[str], runs_dir: Path, results: Path, debug: bool = False,
                 run_id: str | None = None, ingest: bool = True, nproc: int = 1, overrides: dict | None = None,
                 show: bool = True, fuse: bool = True) -> dict:
    """Resolve, preflight, train (stage 1 first when needed) and report one run, or one per method of a
    comma-separated list (fused into groups that train together unless ``fuse=False``). ``run_id``
    names the final run's directory (a stage-1 run gets its own id); ``ingest=False`` leaves the
    database to the caller (the UI is its only writer while it runs). ``overrides``: parsed settings
    under ``sets`` (a recipe file's or a stored run's); ``show=False`` prints nothing on stdout.
    Returns the status of the run, or of the first of several that did not finish."""
    from . import fused

    methods = [m.strip() for m in method.split(",") if m.strip()] or [method]
    if run_id and len(methods) > 1:
        raise UserError("--run-id names one run; drop it to train several methods")
    if run_id:
        check_run_id(runs_dir, run_id)
    check_store(runs_dir, results, ingest)
    specs = [config.resolve(dataset, backbone, m, seed=seed, pretrained=pretrained, data_root=data_root,
                            overrides={**(overrides or {}), **config.parse_sets(sets)}) for m in methods]
    for spec in specs:
        config.check_nproc(spec, nproc)
    check_device(specs[0]["train.device"])
    summaries = {}  # one preflight per set of class names the runs need
    for spec in specs:
        key = config.class_names_needed(spec)
        if key not in summaries:
            summaries[key] = preflight(spec)
        spec.update(summaries[key])
    jobs = plan(specs, runs_dir, fresh=True)  # each run after its stage-1 run if it needs one
    by_hash = {j.hash: j for j in jobs}
    asked = []
    for job in jobs:
        if job.implicit:
            job.spec.update({k: specs[0][k] for k in config.CLASS_KEYS})  # same data, same classes
            train_stage1(job, runs_dir, results, debug, ingest, nproc)
            continue
        if ready(job, by_hash) is None:
            raise UserError(f"stage-1 run {by_hash[job.needs].run.run_id} {by_hash[job.needs].state}")
        asked.append(job)
    starts = [start_spec(job, by_hash) for job in asked]
    statuses = []
    for group in fused.partition(starts, fuse):
        runs = ([prepare(starts[0], runs_dir, run_id=run_id)] if len(starts) == 1
                else prepare_group([starts[i] for i in group], runs_dir))
        statuses += execute_group(runs, results, debug, [starts[i]["method"] for i in group], ingest, nproc)
    runs = [RunDir(runs_dir / status["run_id"]) for status in statuses]
    for run, status in zip(runs, statuses if show else ()):
        print_outcome(run, status, results)
    for run, status in zip(runs, statuses):
        check_stored(run, status, results)
    return next((s for s in statuses if s.get("status") != "finished"), statuses[0])


def train_stage1(job: Job, runs_dir: Path, results: Path, debug: bool, ingest: bool, nproc: int) -> None:
    """Reuse the finished stage-1 run of a two-stage run, or train it (once: another process training
    the same one is waited for, then reused)."""
    said = False
    while job.state != SKIPPED and not take(job, runs_dir):
        if not said:
            console.print("stage 1: another process is training it; waiting")
            said = True
        time.sleep(1.0)
    if job.state == SKIPPED:
        console.print(Text(f"stage 1: reusing {job.run.run_id}"))
        return
    try:
        status = execute(job.spec, runs_dir, results, debug, label=f"stage 1 ({job.spec['method']})",
                         ingest=ingest, nproc=nproc)
    finally:
        if job.claim:
            job.claim.release()
    settle(job, status)
    job.run = RunDir(runs_dir / status["run_id"])
    if status.get("status") != "finished":
        raise UserError(f"stage-1 run {status.get('run_id')} {status.get('status')}: {status.get('error')}")


def resume_headless(run_id: str, runs_dir: Path, results: Path, debug: bool = False, ingest: bool = True,
                    nproc: int = 1, show: bool = True) -> dict:
    """Continue a killed, failed or cancelled run in its own directory from its last checkpoint
    (``ckpt/last.pt``; from the start when it has none), then ingest and report it. A member of a
    fused group continues together with the members that ended as it did (each owned, like the run)."""
    check_store(runs_dir, results, ingest)
    run, owner = process.resumable(runs_dir, run_id)
    owners = [owner]
    try:
        runs = process.group_members(runs_dir, run)
        for member in runs[1:]:
            owners.append(process.own(member))
        for member in runs:
            config.check_nproc(member.spec(), nproc)
        check_device(run.spec().get("train.device", "auto"))
        preflight(run.spec())
    except BaseException:
        process.release_owners(owners)
        raise
    for member in runs:
        member.reopen()
    statuses = execute_group(runs, results, debug, [f"resume {r.spec()['method']}" for r in runs], ingest, nproc,
                             owners)
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
    from .render import render

    out = Console()
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
