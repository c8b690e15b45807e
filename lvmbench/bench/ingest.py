"""``lvmbench bench --ingest N``: how fast the store takes in a study's worth of run directories.

Builds N synthetic finished run directories shaped like real ones (the files a training child
writes: spec, status, a metrics log of training and validation records, a system log, val/test
evaluations with per-class rows), then times what a user pays: the first ``lvmbench ingest``
into a new database, the same ingest again with nothing changed, the ingest after one more run
finished, and ``table main``. Torch-free.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from .. import config
from ..runs.rundir import RunDir, atomic_write_json

VAL_KEYS = ("overall", "many", "medium", "few", "precision", "recall", "f1", "worst_class")
METHODS = ("ce", "focal", "ldam", "balanced_softmax")
T0 = 1_767_000_000.0


SEEDS = 3  # runs 3k, 3k+1, 3k+2 differ by their seed alone: one table cell of three seeds, as in the study


def method_of(index: int) -> str:
    return METHODS[index // SEEDS % len(METHODS)]


def run_id(index: int) -> str:
    return f"bench-{method_of(index)}-s{index}"


def make_run(runs_dir: Path, index: int, rows: int, classes: int, system_lines: int, base: dict) -> RunDir:
    """A finished run directory with ``rows`` metric rows: a validation record (8 keys) every 256
    steps, training records (loss and lr) at every other step in between."""
    run = RunDir(runs_dir / run_id(index))
    run.eval_dir.mkdir(parents=True)
    block = index // (SEEDS * len(METHODS))  # each block of 12 runs: 4 methods x 3 seeds at their own lr
    spec = {**base, "method": method_of(index), "seed": index % SEEDS, "train.lr": round(0.01 * (1 + block), 6)}
    spec["config_hash"] = config.config_hash(spec)
    atomic_write_json(run.spec_file, spec)
    t, lines, step, left = T0 + index * 3600.0, [], 0, rows
    while left > 0:
        step += 1
        t += 0.1173
        if step % 256 == 0 and left >= len(VAL_KEYS):
            values = ", ".join(f'"val/{k}": {50 + (step * 7 + i) % 43 + 0.123456:.6f}' for i, k in enumerate(VAL_KEYS))
            lines.append(f'{{"step": {step}, {values}, "ts": {t:.6f}}}\n')
            left -= len(VAL_KEYS)
        elif step % 2 == 0:
            lines.append(f'{{"step": {step}, "loss": {4.6 / (1 + step / 500):.6f}, '
                         f'"lr": {0.01 * (1 - step / 8192):.8f}, "ts": {t:.6f}}}\n')
            left -= 2
    run.metrics_file.write_text("".join(lines))
    run.system_file.write_text("".join(
        f'{{"ts": {T0 + index * 3600.0 + 2.0 * i:.6f}, "gpu_index": 0, "mem_mib": {9000 + i % 50}.5, '
        f'"power_w": {250 + i % 30}.25, "util_pct": 97.0, "energy_j": {500.0 * i:.1f}}}\n'
        for i in range(system_lines)))
    for split in ("val", "test"):
        accuracies = [2.0 * ((c * 37 + index) % 50) for c in range(classes)]
        atomic_write_json(run.eval_file(split), {"split": split, "n_samples": 50 * classes,
                                                **{k: 40.0 + index % 20 for k in VAL_KEYS},
                                                "worst_class": float(min(accuracies, default=0))})
        atomic_write_json(run.per_class_file(split), [
            {"class_id": c, "class_name": f"class {c}", "n_train": (1280, 60, 8)[c % 3],  # many, medium, few
             "accuracy": accuracies[c], "n_test": 50, "n_correct": (c * 37 + index) % 50}
            for c in range(classes)])
    run.mark_finished(**{
        "run_id": run.run_id, "created_at": T0 + index, "started_at": T0 + index,
        "ended_at": t, "wall_s": t - T0 - index * 3600.0, "s_per_iter": 0.1173, "device": "cuda",
        "gpu_name": "synthetic", "peak_mem_mib": 9050.0, "avg_power_w": 260.0, "energy_kwh": 0.05, "stage": 1,
        "iters": step, "trainable_params": 5_000_000, "total_params": 300_000_000})
    return run


def _timed(fn, cpu: dict | None = None, name: str = ""):
    """``fn()``, its wall seconds; its CPU seconds (every thread of this process) go to ``cpu[name]``."""
    start, start_cpu = time.perf_counter(), time.process_time()
    out = fn()
    if cpu is not None:
        cpu[name] = round(time.process_time() - start_cpu, 3)
    return out, time.perf_counter() - start


def run(n: int, rows: int = 4096, classes: int = 100, system_lines: int = 256, workdir: str | None = None,
        log=lambda text: None) -> dict:
    """Build ``n`` run directories and time ingest and ``table main`` on them (see the module doc)."""
    from ..store import open_readonly, open_writer, tables
    from ..store.ingest import ingest_dir

    tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="lvmbench-ingest-"))
    runs_dir, results = tmp / "runs", tmp / "results.duckdb"
    try:
        base = config.resolve("imagenet-lt", "ViT-B-16", "ce", data_root="/data/imagenet-lt")
        log(f"building {n} run directories of {rows} metric rows in {runs_dir}")
        _, build_s = _timed(lambda: [make_run(runs_dir, i, rows, classes, system_lines, base) for i in range(n)])
        size = sum(p.stat().st_size for p in runs_dir.rglob("*") if p.is_file())

        def ingest():
            with open_writer(results) as con:
                return ingest_dir(con, runs_dir)

        log("first ingest")
        cpu = {}
        first, first_s = _timed(ingest, cpu, "first_ingest")
        with open_readonly(results) as con:
            counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                      for t in ("metrics", "system", "per_class", "evals", "runs")}
        log("ingest again, nothing changed")
        again, again_s = _timed(ingest, cpu, "reingest_unchanged")
        make_run(runs_dir, n, rows, classes, system_lines, base)
        log("ingest after one more run finished")
        one, one_s = _timed(ingest, cpu, "one_new_run")

        def main_table():
            with open_readonly(results) as con:
                return tables.build(con, "main")

        _, table_s = _timed(main_table, cpu, "table_main")

        def main_table_ci():
            with open_readonly(results) as con:
                return tables.build(con, "main", ci=True)

        _, table_ci_s = _timed(main_table_ci, cpu, "table_main_ci")
        if len(first.stored) != n or again.stored or one.stored != [run_id(n)]:
            raise RuntimeError(f"unexpected ingest outcome: {first.summary()}; {again.summary()}; {one.summary()}")
    finally:
        if not workdir:
            shutil.rmtree(tmp, ignore_errors=True)
    all_rows = sum(counts.values())
    return {"runs": n, "metric_rows_per_run": rows, "classes": classes, "system_lines": system_lines,
            "run_files_mb": round(size / 1e6, 1), "build_s": round(build_s, 2), "rows": counts,
            "first_ingest_s": round(first_s, 3), "first_metric_rows_per_s": round(counts["metrics"] / first_s),
            "first_rows_per_s": round(all_rows / first_s),
            "reingest_unchanged_s": round(again_s, 3), "one_new_run_s": round(one_s, 3),
            "table_main_s": round(table_s, 3), "table_main_ci_s": round(table_ci_s, 3), "cpu_s": cpu,
            "first_metric_rows_per_cpu_s": round(counts["metrics"] / max(cpu["first_ingest"], 1e-9))}


def print_report(report: dict, fmt_name: str = "table") -> None:
    from ..render import output, render

    if fmt_name == "json":
        print(json.dumps(report, indent=1))
        return
    r = report
    cpu = r["cpu_s"]
    rows = [["first ingest", r["first_ingest_s"], cpu["first_ingest"],
             f"{r['first_metric_rows_per_s']:,} metric rows/s ({r['first_rows_per_s']:,} rows/s, all tables)"],
            ["ingest again, nothing changed", r["reingest_unchanged_s"], cpu["reingest_unchanged"], ""],
            [f"ingest after one more run ({r['runs'] + 1} runs)", r["one_new_run_s"], cpu["one_new_run"], ""],
            ["table main", r["table_main_s"], cpu["table_main"], ""],
            ["table main --ci", r["table_main_ci_s"], cpu["table_main_ci"], "95 % bootstrap intervals, 2,000 draws"]]
    title = (f"{r['runs']} runs x {r['metric_rows_per_run']} metric rows, {r['classes']} classes, "
             f"{r['system_lines']} system samples ({r['run_files_mb']} MB of run files; "
             f"{r['rows']['metrics']:,} metric rows)")
    render(["step", "wall s", "CPU s", "throughput"], rows, fmt_name, title=title, console=output(min_width=110))
