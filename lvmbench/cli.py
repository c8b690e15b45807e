"""The ``lvmbench`` command: thin argument parsing that calls the library and prints with rich.

User errors are one line and an exit code; tracebacks only with ``--debug``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import catalog, paths
from .errors import UserError, one_line
from .exec.grid import MAX_RUNS


def _add_store_args(p: argparse.ArgumentParser, runs: bool = True) -> None:
    p.add_argument("--results", help="results database (default $LVMBENCH_RESULTS or ./results/results.duckdb)")
    if runs:
        p.add_argument("--runs-dir", help="run directories (default $LVMBENCH_RUNS or ./runs)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lvmbench", description=(
        "Benchmark vision-language models on long-tailed classification. Without a command, opens the UI."))
    parser.add_argument("--debug", action="store_true", help="show tracebacks (also after the command)")
    parser.add_argument("--version", action="version", version=f"lvmbench {version()}")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="train and evaluate one run (headless)")
    run.add_argument("--headless", action="store_true", help="run without the UI (the only mode of this command)")
    run.add_argument("--dataset", help="default mnist-lt")
    run.add_argument("--backbone", help="default tiny-clip")
    run.add_argument("--method", help="default ce; a comma-separated list trains runs that share their inputs as one fused group")
    run.add_argument("--no-fuse", action="store_true", help="train the methods of a list one after another")
    run.add_argument("--seed", type=int, help="default 0")
    run.add_argument("--data-root")
    run.add_argument("--pretrained", help="open_clip pretrained tag (e.g. openai) or a checkpoint file")
    run.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                     help="override settings, e.g. --set train.iters=200 train.batch_size=64")
    run.add_argument("--run-id", help="name of the run directory (default: a fresh id; a stage-1 run gets its own)")
    run.add_argument("--no-ingest", action="store_true",
                     help="leave the run out of the results database (the caller ingests it, as the UI does)")
    run.add_argument("--nproc", type=int, default=1,
                     help="processes for this run (torchrun, data-parallel): one per GPU, or CPU shares")
    run.add_argument("--device", choices=("auto", "cuda", "cpu"),
                     help="where to train (same as --set train.device=...): auto (default) takes a free GPU when "
                          "torch can use one and refuses GPUs it cannot use; cpu trains on the CPU on purpose")
    run.add_argument("--resume", metavar="RUN_ID",
                     help="continue a killed, failed or cancelled run from its last checkpoint, in its directory")
    run.add_argument("--config", metavar="SETTINGS.toml",
                     help="settings from a TOML file (same keys as --set, plus dataset/backbone/method/seed/...)")
    run.add_argument("--from", dest="from_run", metavar="RUN_ID",
                     help="re-run a stored run's exact spec (change it with --set, --seed, ...)")
    run.add_argument("--json", action="store_true",
                     help="print one JSON object (run id, status, evaluations, cost) and nothing else on stdout")
    _add_store_args(run)

    sql = sub.add_parser("sql", help="read-only SQL over the results database")
    sql.add_argument("query")
    sql.add_argument("--format", choices=("table", "csv", "json", "markdown"), default="table")
    _add_store_args(sql, runs=False)

    table = sub.add_parser("table", help="the study's table layouts")
    table.add_argument("kind", choices=("main", "backbones", "memory", "cost", "recipes"),
                       help="recipes: each method's test overall / few under recipe=paper and recipe=reference")
    table.add_argument("--dataset")
    table.add_argument("--backbone")
    table.add_argument("--carbon-intensity", type=float, default=catalog.CARBON_KG_PER_KWH,
                       help=f"kg CO2 per kWh (default {catalog.CARBON_KG_PER_KWH})")
    table.add_argument("--format", choices=("table", "csv", "json", "markdown", "latex"), default="table",
                       help="latex: a booktabs table (\\usepackage{booktabs})")
    table.add_argument("--published", action="store_true",
                       help="main, cost: below each row, the published figures (the study's Tables 1-6 and 8, "
                            "LIFT's main results) and the difference, yours - published")
    table.add_argument("--wide", action="store_true", help="main: Precision and Recall even when they do not fit")
    table.add_argument("--ci", action="store_true",
                       help="main: a 95%% bootstrap interval under every accuracy (test classes within each shot "
                            "group, and seeds)")
    _add_store_args(table, runs=False)

    compare = sub.add_parser("compare", help="paired difference of two methods or runs on each shared test set, "
                                             "with its 95% interval and p-value")
    compare.add_argument("a", help="a method as the tables name it (e.g. lade, 'lade (reference)') or a run id")
    compare.add_argument("b")
    compare.add_argument("--dataset")
    compare.add_argument("--backbone")
    compare.add_argument("--resamples", type=int, default=2000, help="bootstrap draws (default 2000)")
    compare.add_argument("--format", choices=("table", "csv", "json", "markdown"), default="table")
    _add_store_args(compare, runs=False)

    ingest = sub.add_parser("ingest", help="ingest run directories into the results database")
    ingest.add_argument("dir", nargs="?", help="a run directory or a folder of them (default: the runs dir)")
    _add_store_args(ingest)

    demo = sub.add_parser("demo", help="the embedded benchmark: a small grid on tiny-clip / mnist-lt, then the table")
    demo.add_argument("--method", help="comma-separated methods (default: the embedded preset's)")
    demo.add_argument("--full", action="store_true",
                      help="also LIFT's lightweight fine-tuning inside the tower (a few minutes more on a CPU)")
    demo.add_argument("--seed", default="0", help="comma-separated seeds")
    demo.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    demo.add_argument("--max-parallel", type=int, default=DEMO_PARALLEL, help="runs at a time")
    _add_store_args(demo)

    _add_sweep_parser(sub)
    _add_bench_parser(sub)

    cache = sub.add_parser("cache", help="the frozen-encoder feature cache")
    cache.add_argument("action", choices=("verify",),
                       help="verify: hash every shard in full; damaged shards are dropped and encoded again by the next run that reads them")
    cache.add_argument("key", nargs="*", help="entries to check (default: every entry)")
    cache.add_argument("--cache-dir", help="the cache (default $LVMBENCH_CACHE or ./.lvmbench-cache)")

    lst = sub.add_parser("list", help="list datasets, backbones or methods")
    lst.add_argument("what", choices=("datasets", "backbones", "methods", "presets"))
    _add_export_parser(sub)
    for command in sub.choices.values():  # global flags after the command too: `lvmbench table main --debug`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    return parser


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("lvmbench")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _add_export_parser(sub) -> None:
    ex = sub.add_parser("export", help="a snapshot of every table as files (DIR), or every run to MLflow (mlflow)")
    ex.add_argument("target", metavar="DIR|mlflow", help="a new or empty folder, or the word mlflow")
    ex.add_argument("--format", choices=("parquet", "csv", "jsonl"), default="parquet",
                    help="file format of a folder export (default parquet)")
    ex.add_argument("--tracking-uri", help="mlflow: tracking store (default $MLFLOW_TRACKING_URI or MLflow's)")
    ex.add_argument("--experiment", default="lvmbench", help="mlflow: experiment name (default lvmbench)")
    _add_store_args(ex, runs=False)


# On a 2-core CPU two single-threaded runs at a time beat one two-threaded run at a time
# (the embedded grid at a short budget: 66 s against 185 s).
DEMO_PARALLEL = 2


def _add_sweep_parser(sub) -> None:
    sw = sub.add_parser("sweep", help="a grid of runs (or a preset of the study) on local GPUs/CPUs or Slurm")
    sw.add_argument("--preset", help="a named grid, e.g. paper-table1 or embedded (see `lvmbench list presets`)")
    sw.add_argument("--dataset", help="comma-separated datasets (replaces the preset's)")
    sw.add_argument("--backbone", help="comma-separated backbones")
    sw.add_argument("--pretrained", help="comma-separated weights (tags or files), crossed with the backbones")
    sw.add_argument("--method", help="comma-separated methods")
    sw.add_argument("--seed", help="comma-separated seeds, e.g. 0,1,2")
    sw.add_argument("--data-root", action="append", metavar="[DATASET=]DIR",
                    help="data folder, for every dataset or one (repeatable)")
    sw.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                    help="settings for every run; a comma list (train.lr=0.01,0.03) is an axis of the grid")
    sw.add_argument("--dry-run", action="store_true", help="list the planned runs and stop (needs no data)")
    sw.add_argument("--max-runs", type=int, default=MAX_RUNS,
                    help=f"refuse a grid of more runs than this (default {MAX_RUNS:,})")
    sw.add_argument("--executor", choices=("local", "slurm"), default="local")
    sw.add_argument("--gpus", help="local GPUs to use, e.g. 0,1,2,3 (default: every visible GPU)")
    sw.add_argument("--max-parallel", type=int, help="runs at a time (default: one per GPU, or 1 on a CPU)")
    sw.add_argument("--nproc", type=int, default=1, help="GPUs (processes) per run, data-parallel through torchrun")
    sw.add_argument("--device", choices=("auto", "cuda", "cpu"), help="as lvmbench run --device")
    sw.add_argument("--slurm-partition")
    sw.add_argument("--slurm-gpus-per-job", type=int, default=1, help="GPUs per run (several: torchrun)")
    sw.add_argument("--slurm-cpus-per-job", type=int, default=8)
    sw.add_argument("--slurm-time", default="24:00:00", help="time limit per run (Slurm format)")
    sw.add_argument("--slurm-array-parallelism", type=int, default=64, help="Slurm jobs this sweep keeps submitted at a time (one per fused group or run)")
    sw.add_argument("--slurm-cluster", choices=("slurm", "local", "debug"), default="slurm",
                    help="submitit cluster (local: the same jobs as processes on this machine)")
    sw.add_argument("--no-fuse", action="store_true",
                    help="local: train every run in its own process (default: runs that share dataset, weights, seed, sampler, batch and iterations train as one fused group, one tower pass per step)")
    sw.add_argument("--no-wait", action="store_true",
                    help="slurm: submit and return; collect later with `lvmbench ingest`")
    _add_store_args(sw)


def _add_bench_parser(sub) -> None:
    b = sub.add_parser("bench", help="time the decoder's training step per input mode (synthetic data, random weights)")
    b.add_argument("--backbone", default="ViT-B-16", help="any open_clip model (random weights, nothing downloaded)")
    b.add_argument("--batch-size", type=int, default=32)
    b.add_argument("--iters", type=int, default=3, help="timed steps per mode at most (round-robin over the modes)")
    b.add_argument("--max-seconds", type=float, default=150.0, help="start no new round after this long")
    b.add_argument("--compile", action="store_true", help="also time a torch.compile'd decoder")
    b.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    b.add_argument("--fused", type=int, default=0, metavar="K",
                   help="also time K separate steps of tower + decoder against one tower pass feeding K decoders")
    b.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    b.add_argument("--json", action="store_true", help="print one JSON object (same as --format json)")
    b.add_argument("--ingest", type=int, metavar="N",
                   help="instead: time ingest of N synthetic run directories, re-ingest, one new run, table main")
    b.add_argument("--ingest-rows", type=int, default=4096, help="--ingest: metric rows per run")
    b.add_argument("--ingest-classes", type=int, default=100, help="--ingest: classes (per-class rows per split)")
    b.add_argument("--ingest-dir", help="--ingest: build the runs and the database here and keep them "
                                        "(default: a temporary folder, removed)")
    b.add_argument("--loader", action="store_true",
                   help="instead: images/s per core of each decode and transform path on generated JPEGs, and "
                        "whether the loader or the tower bounds a step of ViT-B/16 and ViT-L/14 on a GPU")
    b.add_argument("--target", help="--loader: the GPU to predict for (h100, h200, a100, l40s, rtx4090; "
                                    "default: the CUDA device here, else h100)")
    b.add_argument("--cores", type=int, help="--loader: the cores of the GPU machine (default: the cores this "
                                             "process may use)")
    b.add_argument("--loader-images", type=int, default=96, help="--loader: JPEGs per round")
    b.add_argument("--loader-rounds", type=int, default=3, help="--loader: rounds per path (the median is kept)")


def _bench_ingest(args, fmt_name: str, log) -> int:
    from .bench import ingest as bench_ingest

    if args.ingest < 1 or args.ingest_rows < 0 or args.ingest_classes < 0:
        raise UserError("--ingest N needs N >= 1, and --ingest-rows and --ingest-classes >= 0")
    if args.ingest_dir and Path(args.ingest_dir).exists() and any(Path(args.ingest_dir).iterdir()):
        raise UserError(f"--ingest-dir {args.ingest_dir} is not empty; give a new or empty folder")
    report = bench_ingest.run(args.ingest, args.ingest_rows, args.ingest_classes, workdir=args.ingest_dir, log=log)
    bench_ingest.print_report(report, fmt_name)
    return 0


def cmd_bench(args) -> int:
    fmt_name = "json" if args.json else args.format
    # progress on stderr, also with --json (stdout holds the report): a killed bench leaves its timings
    log = lambda text: print(f"  {text}", file=sys.stderr, flush=True)  # noqa: E731
    if args.ingest is not None:
        return _bench_ingest(args, fmt_name, log)
    if args.loader:
        from .bench import loader as bench_loader

        report = bench_loader.run(args.loader_images, args.loader_rounds, args.target, args.cores, log=log)
        bench_loader.print_report(report, fmt_name)
        return 0
    from .bench import step

    report = step.run(args.backbone, args.batch_size, args.iters, args.max_seconds, args.compile, args.threads,
                      log=log, fused=args.fused)
    step.print_report(report, fmt_name)
    return 0


def device_set(args) -> list[str]:
    """``--device X`` as the setting it stands for."""
    return [f"train.device={args.device}"] if args.device else []


def cmd_run(args) -> int:
    from .config import runspec
    from .exec.runner import cancel_on_sigterm, run_headless

    if args.resume is not None:  # an empty id (a script's unset $ID) is refused, never a fresh run
        return cmd_resume(args)
    runs_dir, results = paths.runs_dir(args.runs_dir), paths.results_path(args.results)
    flags = {"dataset": args.dataset, "backbone": args.backbone, "method": args.method, "seed": args.seed,
             "pretrained": args.pretrained, "data_root": args.data_root}
    request = runspec.compose(flags, args.set + device_set(args), config_file=args.config, from_id=args.from_run,
                              runs_dir=runs_dir, results=results)
    with cancel_on_sigterm():
        status = run_headless(**request.identity, sets=[], overrides=request.overrides, runs_dir=runs_dir,
                              results=results, debug=args.debug, run_id=args.run_id, ingest=not args.no_ingest,
                              nproc=args.nproc, show=not args.json, fuse=not args.no_fuse)
    if args.json:
        from .exec.runner import outcome_json

        print(json.dumps(outcome_json(runs_dir, status), default=str))
    return 0 if status.get("status") == "finished" else 1


def cmd_resume(args) -> int:
    from .exec.runner import cancel_on_sigterm, resume_headless

    if args.set or args.run_id is not None or args.config or args.from_run is not None or args.device:
        raise UserError("--resume continues a run with the settings it was started with; "
                        "drop --set, --config, --from, --run-id and --device")
    with cancel_on_sigterm():
        status = resume_headless(args.resume, runs_dir=paths.runs_dir(args.runs_dir),
                                 results=paths.results_path(args.results), debug=args.debug,
                                 ingest=not args.no_ingest, nproc=args.nproc, show=not args.json)
    if args.json:
        from .exec.runner import outcome_json

        print(json.dumps(outcome_json(paths.runs_dir(args.runs_dir), status), default=str))
    return 0 if status.get("status") == "finished" else 1


def cmd_demo(args) -> int:
    from .exec import sweep
    from .exec.runner import cancel_on_sigterm, check_store

    from .exec.presets import EMBEDDED_FULL_METHODS

    if args.full and args.method:
        raise UserError("demo: --full adds LIFT to the embedded preset's methods; with --method, name the methods yourself")
    sets, swept = sweep.parse_set_grid(args.set)
    methods = list(EMBEDDED_FULL_METHODS) if args.full else sweep.split_list(args.method, "--method")
    axes = sweep.build_axes("embedded", methods=methods, seeds=sweep.parse_seeds(args.seed),
                            sets=sets, swept=swept)
    check_store(paths.runs_dir(args.runs_dir), paths.results_path(args.results))
    with cancel_on_sigterm():
        outcome = sweep.run_sweep(axes, paths.runs_dir(args.runs_dir), paths.results_path(args.results),
                                  max_parallel=args.max_parallel, debug=args.debug)
    return 0 if outcome.ok else 1


def cmd_sweep(args) -> int:
    from .exec import sweep
    from .exec.grid import check_size
    from .exec.slurm import SlurmOptions
    from .exec.runner import cancel_on_sigterm, check_store

    sets, swept = sweep.parse_set_grid(args.set + device_set(args))
    axes = sweep.build_axes(args.preset, datasets=sweep.split_list(args.dataset, "--dataset"),
                            backbones=sweep.split_list(args.backbone, "--backbone"),
                            methods=sweep.split_list(args.method, "--method"), seeds=sweep.parse_seeds(args.seed),
                            pretrained=sweep.split_list(args.pretrained, "--pretrained"),
                            sets=sets, data_roots=sweep.parse_data_roots(args.data_root), swept=swept)
    if args.max_runs < 1:
        raise UserError(f"--max-runs {args.max_runs}: must be >= 1")
    check_size(axes, args.max_runs)  # before anything is expanded, planned or checked
    gpus = sweep.parse_gpus(args.gpus)
    slurm = SlurmOptions(partition=args.slurm_partition, gpus_per_job=args.slurm_gpus_per_job,
                         cpus_per_job=args.slurm_cpus_per_job, time=args.slurm_time,
                         array_parallelism=args.slurm_array_parallelism, cluster=args.slurm_cluster)
    if not args.dry_run:
        check_store(paths.runs_dir(args.runs_dir), paths.results_path(args.results), ingest=not args.no_wait)
    with cancel_on_sigterm():
        outcome = sweep.run_sweep(axes, paths.runs_dir(args.runs_dir), paths.results_path(args.results),
                                  executor=args.executor, gpus=gpus,
                                  max_parallel=args.max_parallel, nproc=args.nproc, slurm=slurm,
                                  wait=not args.no_wait, dry=args.dry_run, debug=args.debug, fuse=not args.no_fuse,
                                  max_runs=args.max_runs)
    return 0 if outcome.ok else 1


def cmd_sql(args) -> int:
    from .render import render
    from .store.console import query

    result = query(paths.results_path(args.results), args.query)
    render(result.columns, result.rows, args.format, exact=True)
    return 0


PUBLISHED_TABLES = ("main", "cost")


def cmd_table(args) -> int:
    from .render import print_table

    if args.published and args.kind not in PUBLISHED_TABLES:
        raise UserError(f"--published: table {args.kind} has no published counterpart; "
                        f"use it with {' or '.join(PUBLISHED_TABLES)}")
    if args.ci and args.kind != "main":
        raise UserError(f"--ci applies to table main, not {args.kind}")
    print_table(paths.results_path(args.results), args.kind, dataset=args.dataset, backbone=args.backbone,
                carbon_kg_per_kwh=args.carbon_intensity, fmt_name=args.format, published=args.published,
                wide=args.wide, ci=args.ci)
    return 0


def cmd_compare(args) -> int:
    from .render import print_built
    from .store import open_readonly
    from .store.compare import compare_table

    if args.resamples < 100:
        raise UserError(f"--resamples {args.resamples}: must be at least 100")
    with open_readonly(paths.results_path(args.results)) as con:
        table = compare_table(con, args.a, args.b, args.dataset, args.backbone, args.resamples)
    print_built(table, args.format)
    return 0


def cmd_ingest(args) -> int:
    from .runs.scheduler import recover_all
    from .runs.rundir import RunDir, find_runs
    from .store import open_writer, pending
    from .store.ingest import ingest_runs

    target = Path(args.dir) if args.dir else paths.runs_dir(args.runs_dir)
    if not RunDir(target).exists():
        paths.check_folder(target, "ingest" if args.dir else "--runs-dir")
    recover_all(find_runs(target))  # a run whose owner died is still marked running: it is killed
    results = paths.results_path(args.results)
    with open_writer(results) as con:
        # with the runs that found the database busy when they ended
        report = ingest_runs(con, [*find_runs(target), *pending.waiting(results)])
    pending.clear(results)
    for line in report.messages():
        print(line, file=sys.stderr)
    print(f"{report.summary()} in {results}")
    return 1 if report.skipped else 0


def cmd_cache(args) -> int:
    from .train.cache import FeatureCache

    root = Path(args.cache_dir) if args.cache_dir else paths.cache_dir()
    entries = [e for e in FeatureCache.entries(root) if not args.key or e.key in args.key]
    unknown = sorted(set(args.key) - {e.key for e in entries})
    if unknown:
        raise UserError(f"no feature cache entry {unknown[0]} in {root}")
    damaged_entries = 0
    for entry in entries:
        damaged = entry.verify()
        damaged_entries += bool(damaged)
        verdict = (f"DAMAGED shard(s) {', '.join(map(str, damaged))}: dropped, encoded again by the next run"
                   if damaged else "ok")
        print(f"{entry.key}  {entry.rows} rows  {verdict}")
    print(f"verified {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} in {root}: "
          f"{damaged_entries} damaged")
    return 1 if damaged_entries else 0


def cmd_list(args) -> int:
    from .render import output, render

    if args.what == "presets":
        from .exec.presets import PRESETS

        rows = [(name, p.description, str(len(p.methods))) for name, p in PRESETS.items()]
        cols = ("preset", "description", "methods")
    elif args.what == "methods":
        rows = [(m.name, m.kind, f"stage {m.stage}", m.summary) for m in catalog.METHODS.values()]
        cols = ("method", "kind", "stage", "description")
    elif args.what == "datasets":
        rows, cols = [(d.name, d.description) for d in catalog.DATASETS.values()], ("dataset", "description")
    else:
        rows, cols = list(catalog.BACKBONES.items()), ("backbone", "description")
        rows.append(("<any open_clip model>", "e.g. ViT-H-14, convnext_base_w; see open_clip.list_models()"))
    render(list(cols), rows, console=output())
    return 0


def cmd_export(args) -> int:
    results = paths.results_path(args.results)
    if args.target == "mlflow":
        from .store.mlflow_export import export_mlflow

        done = export_mlflow(results, tracking_uri=args.tracking_uri, experiment=args.experiment)
        print(f"mlflow: {done.created} run(s) created, {done.updated} updated, {done.unchanged} unchanged "
              f"in experiment {args.experiment!r} at {done.tracking_uri}")
        return 0
    from .store.export import export_database

    counts = export_database(results, Path(args.target), args.format)
    print(f"exported {sum(counts.values())} rows of {len(counts)} tables to {args.target} ({args.format}): "
          + ", ".join(f"{t} {n}" for t, n in counts.items()))
    return 0


COMMANDS = {"run": cmd_run, "demo": cmd_demo, "sweep": cmd_sweep, "sql": cmd_sql, "table": cmd_table,
            "compare": cmd_compare,
            "ingest": cmd_ingest, "list": cmd_list, "bench": cmd_bench, "export": cmd_export, "cache": cmd_cache}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command is None:
            from .tui.app import main as open_ui  # Textual loads only when the UI opens

            return open_ui()
        return COMMANDS[args.command](args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk anywhere this process writes: the cause in one line
        if args.debug or not paths.is_no_space(exc):
            raise
        print(f"error: {paths.no_space(exc.filename or '.')}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
