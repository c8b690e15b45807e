"""``lvmbench run --headless``: validate, train the stage-1 run if needed, run, ingest, print."""
from __future__ import annotations

import signal
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import config, launch
from .errors import UserError
from .rundir import RunDir, check_run_id

console = Console(stderr=True)


class Terminated(UserError):
    """SIGTERM reached ``lvmbench run`` (e.g. the UI's cancel key): the child was cancelled."""

    exit_code = 128 + signal.SIGTERM


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


def preflight(spec: dict) -> None:
    """Fail fast, in the parent, on a bad data path or backbone: nothing is created or stored."""
    from .data import build_dataset
    from .models.backbone import ensure_weights

    dataset = build_dataset(spec)
    if config.class_names_needed(spec):
        dataset.require_class_names(config.class_names_needed(spec))
    ensure_weights(spec["backbone"], spec["pretrained"])


def ingest_quietly(results: Path, *runs: RunDir) -> None:
    """Ingest runs; a database that cannot be opened costs nothing (the run directories stay)."""
    from .store import open_writer, pending
    from .store.ingest import ingest_runs

    if not runs:
        return
    try:
        with open_writer(results) as con:
            # a bad run never keeps the others out; runs that found the database busy come along
            skipped = ingest_runs(con, [*pending.waiting(results), *runs]).skipped
        pending.clear(results)
    except UserError as exc:
        pending.remember(results, runs)
        where = runs[0].path if len(runs) == 1 else runs[0].path.parent
        skipped = [(where, str(exc))]
        hint = f"the next run stored in {results} stores it too; or later: lvmbench ingest {where}"
    else:
        hint = None
    for where, why in skipped:
        console.print("[yellow]warning:[/] " + escape(f"kept in {where} but not stored: {why} "
                                                      f"({hint or f'later: lvmbench ingest {where}'})"), soft_wrap=True)


def execute(spec: dict, runs_dir: Path, results: Path, debug: bool = False, label: str | None = None,
            run_id: str | None = None, ingest: bool = True, nproc: int = 1, resume: RunDir | None = None) -> dict:
    """Run one prepared spec in a child (``nproc`` processes: torchrun) with a progress bar; ingest it
    (unless told not to, or it failed on bad input); return its final status. ``resume``: continue
    that run in its own directory instead of creating one."""
    run = resume or launch.prepare(spec, runs_dir, run_id=run_id)
    return execute_group([run], results, debug, [label or run.run_id], ingest, nproc)[0]


def execute_group(runs: list[RunDir], results: Path, debug: bool = False, labels: list[str] | None = None,
                  ingest: bool = True, nproc: int = 1) -> list[dict]:
    """Train prepared runs in one child, as one fused group (one run: a plain run), a progress bar
    each; ingest them (unless told not to, or they failed on bad input); return their final statuses."""
    proc = launch.spawn(runs[0], debug=debug, nproc=nproc, members=runs[1:])
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        bars = [progress.add_task(label, total=run.spec()["train.iters"])
                for run, label in zip(runs, labels or [r.run_id for r in runs])]

        def show(steps: list[int]) -> None:
            for bar, step in zip(bars, steps):
                progress.update(bar, completed=step)

        try:
            statuses = launch.wait_group(proc, runs, show)
        except (KeyboardInterrupt, Terminated):
            launch.cancel_group(runs, proc)
            if ingest:
                ingest_quietly(results, *runs)
            raise
    if ingest:
        ingest_quietly(results, *[r for r, st in zip(runs, statuses) if not st.get("user_error")])
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
    from .store.db import check_is_duckdb

    methods = [m.strip() for m in method.split(",") if m.strip()] or [method]
    if run_id and len(methods) > 1:
        raise UserError("--run-id names one run; drop it to train several methods")
    if run_id:
        check_run_id(runs_dir, run_id)
    check_is_duckdb(results)
    specs = [config.resolve(dataset, backbone, m, seed=seed, pretrained=pretrained,
                            data_root=str(Path(data_root).expanduser().resolve()) if data_root else None,
                            overrides={**(overrides or {}), **config.parse_sets(sets)}) for m in methods]
    for spec in specs:
        config.check_nproc(spec, nproc)
    for spec in {config.class_names_needed(s): s for s in specs}.values():
        preflight(spec)
    for spec in specs:
        if launch.needs_stage1(spec):
            spec["stage1.run_id"] = stage1_run(spec, runs_dir, results, debug, ingest, nproc).run_id
    statuses = []
    for group in fused.partition(specs, fuse):
        runs = ([launch.prepare(specs[0], runs_dir, run_id=run_id)] if len(specs) == 1
                else launch.prepare_group([specs[i] for i in group], runs_dir))
        statuses += execute_group(runs, results, debug, [methods[i] for i in group], ingest, nproc)
    for status in statuses if show else ():
        print_outcome(RunDir(runs_dir / status["run_id"]), status)
    return next((s for s in statuses if s.get("status") != "finished"), statuses[0])


def stage1_run(spec: dict, runs_dir: Path, results: Path, debug: bool, ingest: bool, nproc: int) -> RunDir:
    """The finished stage-1 run a two-stage spec starts from: found, or trained now."""
    stage1 = launch.stage1_spec(spec)
    found = launch.find_finished(runs_dir, config.config_hash(stage1))
    if found:
        console.print(f"stage 1: reusing {found.run_id}")
        return found
    s1_status = execute(stage1, runs_dir, results, debug, label=f"stage 1 ({stage1['method']})",
                        ingest=ingest, nproc=nproc)
    if s1_status.get("status") != "finished":
        raise UserError(f"stage-1 run {s1_status.get('run_id')} {s1_status.get('status')}: {s1_status.get('error')}")
    return RunDir(runs_dir / s1_status["run_id"])


def resume_headless(run_id: str, runs_dir: Path, results: Path, debug: bool = False, ingest: bool = True,
                    nproc: int = 1, show: bool = True) -> dict:
    """Continue a killed, failed or cancelled run in its own directory from its last checkpoint
    (``ckpt/last.pt``; from the start when it has none), then ingest and report it. A member of a
    fused group continues together with the members that ended as it did."""
    from .store.db import check_is_duckdb

    check_is_duckdb(results)
    run = launch.resumable(runs_dir, run_id)
    runs = launch.group_members(runs_dir, run)
    for member in runs:
        config.check_nproc(member.spec(), nproc)
    preflight(run.spec())
    for member in runs:
        launch.reopen(member)
    statuses = execute_group(runs, results, debug, [f"resume {r.spec()['method']}" for r in runs], ingest, nproc)
    for member, status in zip(runs, statuses if show else ()):
        print_outcome(member, status)
    return statuses[0]


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


def print_outcome(run: RunDir, status: dict) -> None:
    from .render import render

    out = Console()
    if status.get("status") != "finished":
        out.print(f"[red]run {run.run_id} {status.get('status')}:[/] {status.get('error')}")
        out.print(f"log: {run.log_file}")
        out.print(f"continue it (once the cause is fixed): lvmbench run --headless --resume {run.run_id}")
        return
    test = run.evaluation("test") or {}
    cols = ["overall", "many", "medium", "few", "precision", "recall", "f1", "worst"]
    values = [test.get(c if c != "worst" else "worst_class") for c in cols]
    render(cols, [values], title=f"{run.run_id} — test (%)", console=out)
    if status.get("s_per_iter"):
        out.print(f"s/iter {status['s_per_iter']:.4f} · peak {status.get('peak_mem_mib', 0):.0f} MiB · "
                  f"wall {status.get('wall_s', 0):.1f} s")
