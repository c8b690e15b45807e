"""``lvmbench sweep``: a grid or a preset, planned (shared stage-1 runs, finished runs skipped), run
by the local or the Slurm executor, ingested run by run, then the paper-style tables."""
from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .. import config
from ..errors import UserError
from ..render import output
from ..runs.plan import BLOCKED, PENDING, SKIPPED, Job, plan
from ..runs.scheduler import Reporter, Scheduler, ingest_quietly
from .grid import MAX_RUNS, Axes, expand
from .presets import preset

console = output(stderr=True)


def split_list(text: str | None, flag: str = "") -> list[str] | None:
    """``a,b,c`` → ``[a, b, c]`` (None when the option was not given; a list of no names is refused)."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UserError(f"{flag or 'a list'} {text!r}: names nothing; give comma-separated values")
    return items


def parse_seeds(text: str | None) -> list[int] | None:
    items = split_list(text, "--seed")
    try:
        return None if items is None else [int(s) for s in items]
    except ValueError:
        raise UserError(f"--seed {text}: expected integers, e.g. 0,1,2") from None


def parse_gpus(text: str | None) -> list[str] | None:
    """``--gpus 0,1`` → ``["0", "1"]``: GPU indices (or NVIDIA UUIDs, ``GPU-…``/``MIG-…``), each once."""
    gpus = split_list(text, "--gpus")
    for gpu in gpus or []:
        if not (gpu.isdigit() or gpu.startswith(("GPU-", "MIG-"))):
            raise UserError(f"--gpus {text}: {gpu!r} is not a GPU index or UUID; give indices such as 0,1 "
                            "or UUIDs such as GPU-… / MIG-… (nvidia-smi -L lists both)")
    if gpus and len(set(gpus)) < len(gpus):
        raise UserError(f"--gpus {text}: a GPU is named twice")
    return gpus


def parse_data_roots(values: list[str] | None) -> dict[str, str]:
    """``--data-root DIR`` (every dataset) or ``--data-root DATASET=DIR``, repeatable."""
    roots = {}
    for value in values or []:
        name, _, root = value.rpartition("=") if "=" in value else ("*", "", value)
        roots[name] = str(Path(root).expanduser().resolve())
    return roots


def parse_set_grid(pairs: list[str] | None) -> tuple[dict, dict[str, list]]:
    """``--set`` pairs for a sweep: ``key=v`` holds for every run, ``key=v1,v2`` is an axis of the grid
    (each key once). Return the fixed settings and the swept ones (key -> values), not yet crossed."""
    fixed, axes = {}, {}
    for key, raw in config.split_pairs(pairs).items():
        if "," not in raw:
            fixed[key] = raw
            continue
        values = [v.strip() for v in raw.split(",")]
        if not all(values):
            raise UserError(f"--set {key}={raw}: an empty value in the list")
        axes[key] = [config.parse_sets([f"{key}={v}"])[key] for v in values]
    return config.parse_sets([f"{k}={v}" for k, v in fixed.items()]), axes


def build_axes(preset_name: str | None, datasets=None, backbones=None, methods=None, seeds=None,
               pretrained=None, sets: dict | None = None, data_roots: dict | None = None,
               swept: dict[str, list] | None = None) -> Axes:
    """The grid's axes: the preset's, each replaced by the one given on the command line; ``swept``
    (from :func:`parse_set_grid`) crosses the grid with lists of settings."""
    base = preset(preset_name) if preset_name else None
    if base is None and not methods:
        raise UserError("give --preset NAME or at least --method m1,m2,... (see `lvmbench list presets`)")

    def pick(given, from_preset, default):
        return list(given) if given else list(from_preset if base else default)

    return Axes(datasets=pick(datasets, base and base.datasets, ["mnist-lt"]),
                backbones=pick(backbones, base and base.backbones, ["tiny-clip"]),
                methods=pick(methods, base and base.methods, []),
                seeds=pick(seeds, base and base.seeds, [0]),
                pretrained=pick(pretrained, base and base.pretrained, [None]),
                sets={**(base.sets if base else {}), **(sets or {})}, data_roots=dict(data_roots or {}),
                swept=dict(swept or {}), method_sets=dict(base.method_sets if base else {}))


@dataclass
class Outcome:
    jobs: list[Job]
    sweep_id: str | None = None
    failed: list[Job] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


class RichReporter(Reporter):
    """A bar for the sweep, one per running child, and a line per run that ends."""

    def __init__(self, progress: Progress, total: int):
        self.bars = progress
        self.overall = progress.add_task("[bold]sweep", total=total)
        self.tasks: dict[str, int] = {}

    def started(self, job: Job) -> None:
        self.tasks[job.hash] = self.bars.add_task(job.label, total=job.spec["train.iters"])

    def progress(self, job: Job, step: int) -> None:
        if job.hash in self.tasks:
            self.bars.update(self.tasks[job.hash], completed=step)

    def settled(self, job: Job) -> None:
        if job.hash in self.tasks:
            self.bars.remove_task(self.tasks.pop(job.hash))
        self.bars.advance(self.overall)
        self.bars.console.print(describe(job))


def describe(job: Job) -> str:
    """One line about a settled job."""
    if job.state in ("finished", SKIPPED):
        test = (job.run.evaluation("test") or {}) if job.run else {}
        overall = f" · test overall {test['overall']:.2f}" if "overall" in test else ""
        word = "finished" if job.state == "finished" else "already finished"
        return f"[green]✓[/] {job.label} [dim]{job.run.run_id}[/] {word}{overall}"
    where = f" (log: {job.run.log_file})" if job.run and job.state != BLOCKED else ""
    return f"[red]✗[/] {job.label} {job.state}: {job.error}{where}"


def dry_run(jobs: list[Job], out: Console, fuse: bool = True, shown: tuple[str, ...] = ()) -> None:
    """List the planned runs: what each waits for, which train together, and which are already finished;
    the settings column holds the swept keys and ``shown`` (a preset's per-method keys)."""
    from ..render import render
    from ..store.variants import text

    index = {j.hash: i for i, j in enumerate(jobs, 1)}
    varied = list(dict.fromkeys([*varied_settings(jobs), *shown]))
    groups = fused_groups(jobs) if fuse else {}
    rows = [[i, j.spec["dataset"], j.spec["backbone"], j.spec["pretrained"], j.spec["method"], j.spec["seed"],
             *([" ".join(f"{k}={text(k, j.spec.get(k))}" for k in varied)] if varied else []),
             f"#{index[j.needs]}" if j.needs else "", *([groups.get(i - 1, "")] if groups else []), state_word(j),
             j.hash + (" (stage 1)" if j.implicit else "")] for i, j in enumerate(jobs, 1)]
    render(["#", "dataset", "backbone", "pretrained", "method", "seed", *(["settings"] if varied else []), "after",
            *(["fused"] if groups else []), "state", "config"], rows, title="sweep plan", console=out)
    todo = sum(j.state == PENDING for j in jobs)
    out.print(f"{len(jobs)} runs: {todo} to start, {len(jobs) - todo} already finished", soft_wrap=True)
    seeds = sorted({j.spec["seed"] for j in jobs})
    cells = len({config.result_group(j.spec) for j in jobs})
    out.print(f"{cells} table cells of {len(seeds)} seed(s) each ({', '.join(map(str, seeds))}; --seed replaces them)",
              soft_wrap=True)
    if groups:
        from ..runs.fused import MAX_MEMBERS

        sizes = Counter(groups.values())  # g1, g2, … in order: groups are numbered by their first run
        out.print(f"{len(groups)} of them train in {len(sizes)} fused group(s) of at most {MAX_MEMBERS} runs, one "
                  f"tower pass per step for each group ({', '.join(f'{g}: {n} runs' for g, n in sizes.items())}); "
                  "--no-fuse trains every run alone", soft_wrap=True)


def fused_groups(jobs: list[Job]) -> dict[int, str]:
    """The runs the local executor starts as fused groups of two or more: plan position -> group name
    (g1, g2, …). A job that continues an interrupted run trains alone; a stage-2 job's stage-1 run is
    its directory, or the stage-1 job of the plan when that has none yet."""
    from ..runs.fused import partition

    by_hash = {j.hash: j for j in jobs}
    new = [i for i, job in enumerate(jobs) if job.state == PENDING and job.run is None]

    def planned_spec(job: Job) -> dict:
        if not job.needs:
            return job.spec
        parent = by_hash[job.needs]
        return {**job.spec, "stage1.run_id": parent.run.run_id if parent.run else f"planned {parent.hash}"}

    fused = [group for group in partition([planned_spec(jobs[i]) for i in new]) if len(group) > 1]
    return {new[k]: f"g{n}" for n, group in enumerate(fused, 1) for k in group}


def state_word(job: Job) -> str:
    if job.state == SKIPPED:
        return "done: " + job.run.run_id
    return "continue: " + job.run.run_id if job.run else "new"


def varied_settings(jobs: list[Job]) -> list[str]:
    """The ``--set`` keys whose value differs between runs of one method on one dataset and backbone
    (what a settings sweep varies; methods differing by their own profiles vary nothing)."""
    cells: dict[tuple, list[dict]] = {}
    for j in jobs:
        if not j.implicit:
            cells.setdefault(tuple(j.spec.get(k) for k in ("dataset", "backbone", "pretrained", "method")),
                             []).append(j.spec)
    keys = dict.fromkeys(k for specs in cells.values() for spec in specs for k in spec
                         if k in config.SCHEMA and k not in ("loss", "stage1.run_id") or k.startswith("loss."))
    return [k for k in keys if any(len({repr(spec.get(k)) for spec in specs}) > 1 for specs in cells.values())]


def preflight_all(jobs: list[Job]) -> None:
    """Check data and weights once per (dataset, data root, backbone, weights) the sweep will start."""
    from .runner import preflight

    seen: dict[tuple, dict] = {}
    for job in jobs:
        key = tuple(str(v) for k, v in sorted(job.spec.items())
                    if k in ("dataset", "data_root", "backbone", "pretrained") or k.startswith("data."))
        if job.state == PENDING and key not in seen:
            seen[key] = preflight(job.spec)
        if job.state == PENDING:
            job.spec.update(seen[key])  # the class summary, recorded in each run's spec


def new_sweep_id() -> str:
    return f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def run_sweep(axes: Axes, runs_dir: Path, results: Path, *, executor: str = "local", gpus: list[str] | None = None,
              max_parallel: int | None = None, nproc: int = 1, slurm=None, wait: bool = True,
              dry: bool = False, debug: bool = False, out: Console | None = None, fuse: bool = True,
              max_runs: int = MAX_RUNS) -> Outcome:
    """Plan and run a sweep through the scheduler; print progress, a line per run, and the tables at the
    end. With ``fuse`` runs that share their inputs train as fused groups (one tower pass a step)."""
    from ..store.db import check_is_duckdb

    out = out or output()
    jobs = plan(expand(axes, max_runs), runs_dir)
    if dry:
        shown = tuple(dict.fromkeys(k for sets in axes.method_sets.values() for k in sets))
        dry_run(jobs, out, fuse=fuse, shown=shown)
        return Outcome(jobs)
    check_is_duckdb(results)
    for job in jobs:
        config.check_nproc(job.spec, nproc)
    device = jobs[0].spec["train.device"] if jobs else "auto"
    if executor == "local":
        from .runner import check_device

        check_device(device, [job.spec["data.decode"] for job in jobs])  # a Slurm task checks its own node
    preflight_all(jobs)
    skipped = [j for j in jobs if j.state == SKIPPED]
    todo = len(jobs) - len(skipped)
    ingest_quietly(results, *[j.run for j in skipped])  # a sweep may fill another results file
    out.print(f"sweep: {len(jobs)} runs, {todo} to start, {len(skipped)} already finished")
    sweep_id = new_sweep_id()
    if todo:
        where = _executor(executor, runs_dir, sweep_id, gpus, max_parallel, nproc, slurm, debug, device)
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=console) as progress:
            Scheduler(where, runs_dir, results, sweep_id=sweep_id, fuse=fuse, reporter=RichReporter(progress, todo),
                      interval=2.0 if executor == "slurm" else 0.5).run(jobs, follow=wait or executor != "slurm")
    outcome = Outcome(jobs, sweep_id, [j for j in jobs if j.state not in ("finished", SKIPPED, "running")])
    report(outcome, results, out, waited=wait or executor != "slurm", runs_dir=runs_dir)
    return outcome


def _executor(kind, runs_dir, sweep_id, gpus, max_parallel, nproc, slurm, debug, device="auto"):
    if kind == "local":
        from .local import LocalExecutor, local_slots

        return LocalExecutor(local_slots(gpus, max_parallel, nproc, device=device), nproc, debug)
    if kind == "slurm":
        from .slurm import SlurmExecutor, SlurmOptions

        return SlurmExecutor(slurm or SlurmOptions(), runs_dir, sweep_id, debug)
    raise UserError(f"--executor {kind}: choose from local, slurm")


def report(outcome: Outcome, results: Path, out: Console, waited: bool, runs_dir: Path) -> None:
    """Failures (with their errors), then the main table of each dataset of the sweep."""
    from ..render import print_table

    if not waited:
        out.print(f"submitted; when the jobs have ended: lvmbench ingest --runs-dir {runs_dir} --results {results}")
        return
    for job in outcome.failed:
        out.print(describe(job))
    if outcome.failed:
        out.print(f"[red]{len(outcome.failed)} of {len(outcome.jobs)} runs did not finish[/]")
    datasets = dict.fromkeys(j.spec["dataset"] for j in outcome.jobs)
    several = len({(j.spec["backbone"], j.spec["pretrained"]) for j in outcome.jobs}) > 1
    for dataset in datasets:
        print_table(results, "backbones" if several else "main", dataset=dataset, console=out)
    varied = varied_settings(outcome.jobs)
    if varied:
        out.print("[yellow]note:[/] each value of a swept setting is a row of its own in the tables; "
                  "side by side: lvmbench sql \"{}\" --results {}".format(
                      settings_query(varied).replace('"', '\\"'), results),
                  soft_wrap=True)


def settings_query(keys: list[str]) -> str:
    """SQL that averages the test accuracy of finished runs per method and value of each swept key."""
    picks = ", ".join(f"config->>'/{k}' AS \"{k}\"" for k in keys)
    return (f"SELECT method, {picks}, count(*) AS seeds, round(avg(overall), 2) AS overall FROM runs "
            "JOIN evals USING (run_id) WHERE split = 'test' AND status = 'finished' GROUP BY ALL ORDER BY ALL")
