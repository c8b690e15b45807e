"""Ingest run directories into the database: idempotent, incremental, columnar, and one bad run
folder never stops the others.

Runs are read a batch at a time: Python reads each run's files as text (only the new lines of a
running run's logs), DuckDB parses them (``parse``), and the batch is stored in one transaction. A
batch that fails is stored again run by run, so that every run is stored whole or not at all and a
bad one is named and skipped. ``run_sources`` remembers what each stored run was built from
(``sources``): a run whose files did not change is not read again.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from ..catalog import CARBON_KG_PER_KWH
from ..errors import UserError, one_line
from ..runs.rundir import STATUS, RunDir, eval_name, find_runs, per_class_name, read_text
from . import parse, sources, validate
from .db import transaction
from .schema import TYPES

BATCH_RUNS = 64  # runs read and stored per transaction


def _ts(value):
    return datetime.fromtimestamp(float(value), timezone.utc).replace(tzinfo=None) if value else None


def run_row(run: RunDir, carbon_kg_per_kwh: float = CARBON_KG_PER_KWH) -> dict:
    """The ``runs`` row of a run directory, its spec as this version resolves it (``config.regrouped``)."""
    from ..config import regrouped

    spec, status = regrouped(run.spec()), run.status()
    energy = status.get("energy_kwh")
    return {
        "run_id": run.run_id, "sweep_id": spec.get("sweep_id"), "dataset": spec["dataset"],
        "backbone": spec["backbone"], "pretrained": spec.get("pretrained"), "method": spec["method"],
        "stage": status.get("stage", 2 if spec.get("stage1.run_id") else 1),
        "parent_run_id": status.get("parent_run_id") or spec.get("stage1.run_id"), "seed": spec["seed"],
        "status": status.get("status", "queued"), "config": json.dumps(spec, sort_keys=True, default=str),
        "config_hash": spec["config_hash"], "git_sha": spec.get("git_sha"),
        "device": status.get("device"), "gpu_name": status.get("gpu_name"),
        "trainable_params": status.get("trainable_params"), "total_params": status.get("total_params"),
        "iters": status.get("iters", spec.get("train.iters")), "batch_size": spec.get("train.batch_size"),
        "started_at": _ts(status.get("started_at")), "ended_at": _ts(status.get("ended_at")),
        "wall_s": status.get("wall_s"), "s_per_iter": status.get("s_per_iter"),
        "peak_mem_mib": status.get("peak_mem_mib"), "avg_power_w": status.get("avg_power_w"),
        "energy_kwh": energy, "co2_kg": energy * carbon_kg_per_kwh if energy is not None else None,
        "error": status.get("error"), "skipped_images": status.get("skipped_images"),
        # A run made before recipes existed has none: it is neither recipe, and tables keep it apart.
        "recipe": spec.get("recipe"), "selected_on": status.get("selected_on"),
        # A fused group's members trained in one process: the group's costs, and each member's share above.
        "fused_group": spec.get("fused_group"), "fused_size": status.get("fused_size", spec.get("fused_size", 1)),
        "group_wall_s": status.get("group_wall_s", status.get("wall_s")),
        "group_energy_kwh": status.get("group_energy_kwh", energy),
        "group_peak_mem_mib": status.get("group_peak_mem_mib", status.get("peak_mem_mib")),
        # Mean seconds a training step waited for its images (none: no loader, e.g. cache.mode=train).
        "loader_wait_s": status.get("loader_wait_s"),
        # its GPU also ran other processes: power and energy are the device's, not the run's alone
        "gpu_shared": status.get("gpu_shared"),
    }


@dataclass
class IngestReport:
    """What an ingest did with each run directory it was given."""

    stored: list[str] = field(default_factory=list)  # stored or brought up to date
    unchanged: list[str] = field(default_factory=list)  # already stored as its files are
    left_out: list[str] = field(default_factory=list)  # failed on bad input: no result to store
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (folder, why): not stored
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (run id, what looks wrong): stored

    def messages(self) -> list[str]:
        """One line per skipped folder and per warning."""
        return ([one_line(f"skipped {path}: {why}") for path, why in self.skipped]
                + [one_line(f"warning: {run_id}: {what}") for run_id, what in self.warnings])

    def summary(self) -> str:
        parts = [f"stored {len(self.stored)} run(s)", f"{len(self.unchanged)} unchanged"]
        if self.left_out:
            parts.append(f"{len(self.left_out)} left out (failed on bad input)")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        return ", ".join(parts)


class BadRun(Exception):
    """A run folder that cannot be stored; the message says why."""


class LeftOut(Exception):
    """A run that failed on bad input (``user_error`` in its status): it holds no result."""


@dataclass
class _Staged:
    """One run read from its folder, ready to store."""

    run: RunDir
    row: dict
    texts: dict[str, str]  # _ingest_text kind -> content
    replace: dict[str, bool]  # log table -> its lines replace the stored rows
    files: dict  # the run's run_sources.files once stored
    warnings: list[str]
    known: bool  # stored before: its old rows are replaced


def _read_spec(run: RunDir) -> dict:
    try:
        spec = json.loads(read_text(run.spec_file))
    except json.JSONDecodeError as exc:
        raise BadRun(f"spec.json is not valid JSON ({exc})") from None
    except UnicodeDecodeError:
        raise BadRun("spec.json is not UTF-8 text") from None
    if not isinstance(spec, dict):
        raise BadRun("spec.json is not a JSON object")
    return spec


def _status_warning(run: RunDir, states: dict) -> str | None:
    if STATUS not in states:
        return "no status.json: stored as queued"
    if states[STATUS][0] == 0:
        return "status.json is empty: stored as queued"
    try:
        if isinstance(json.loads(read_text(run.status_file)), dict):
            return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    return "status.json is not a JSON object: stored as queued"


def _stage(run: RunDir, states: dict, stored: dict | None) -> _Staged:
    """Read what of ``run`` has to be stored (raises :class:`BadRun`, :class:`LeftOut`)."""
    if run.status().get("user_error"):
        raise LeftOut
    try:
        validate.check_identity_fields(_read_spec(run))
        row = run_row(run)
        validate.check_row(row)
    except validate.Invalid as exc:
        raise BadRun(str(exc)) from None
    except KeyError as exc:
        raise BadRun(f"spec.json has no {exc}") from None
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise BadRun(f"spec.json or status.json holds a value of the wrong kind ({exc})") from None
    warnings = [w for w in [_status_warning(run, states)] if w]
    files = {name: sources.entry(state) for name, state in states.items()}
    texts, replace = {}, {}
    appendable = stored is not None and stored.get("status") in sources.LIVE
    for table, name in sources.LOGS.items():
        chunk = sources.read_log(run.path / name, (stored or {}).get("files", {}).get(name), states.get(name),
                                 appendable)
        texts[table], replace[table] = chunk.text, chunk.replace
        if name in states:
            files[name] = sources.entry(states[name], chunk)
        if chunk.torn and row["status"] not in sources.LIVE:
            warnings.append(f"{name} ends in an incomplete line ({chunk.torn} bytes not stored)")
    for split in sources.EVAL_SPLITS:
        if eval_name(split) in states:
            texts[split] = read_text(run.eval_file(split), errors="replace")
            if per_class_name(split) in states:
                texts[f"per_class_{split}"] = read_text(run.per_class_file(split), errors="replace")
    _check_evaluations(texts)
    if row["status"] == "finished" and "test" not in texts:
        warnings.append("finished but has no eval/test.json: stored without test results")
    return _Staged(run, row, texts, replace, {"status": row["status"], "files": files}, warnings, stored is not None)


def _check_evaluations(texts: dict[str, str]) -> None:
    """Every evaluation and per-class file staged: what a run writes, or the run is skipped."""
    try:
        for split in sources.EVAL_SPLITS:
            evaluation = validate.check_evaluation(eval_name(split), texts[split]) if split in texts else None
            if f"per_class_{split}" in texts:
                validate.check_per_class(per_class_name(split), texts[f"per_class_{split}"], evaluation)
    except validate.Invalid as exc:
        raise BadRun(str(exc)) from None


def _insert_columns(con, table: str, types: dict[str, str], rows: list[list]) -> None:
    """Insert ``rows`` (values in the order of ``types``) with one statement: one list per column."""
    if rows:
        select = ", ".join(f"unnest(?::{t}[])" for t in types.values())
        con.execute(f"INSERT INTO {table} ({', '.join(types)}) SELECT {select}", [list(c) for c in zip(*rows)])


def _store(con, batch: list[_Staged]) -> dict[tuple[str, str], int]:
    """Store a batch of staged runs in one transaction; return unreadable log lines per (run, log)."""
    con.execute("DELETE FROM _ingest_batch")
    con.execute("DELETE FROM _ingest_text")
    _insert_columns(con, "_ingest_batch", parse.BATCH, [[s.run.run_id, s.replace["metrics"], s.replace["system"]]
                                                        for s in batch])
    _insert_columns(con, "_ingest_text", parse.TEXT, [[s.run.run_id, kind, text] for s in batch
                                                      for kind, text in s.texts.items() if text])
    with transaction(con):  # a failed ROLLBACK (a full disk) never hides the cause
        if any(s.known for s in batch) or con.execute(
                "SELECT count(*) FROM runs WHERE run_id IN (SELECT run_id FROM _ingest_batch)").fetchone()[0]:
            for table in ("runs", "evals", "per_class", "run_sources"):
                con.execute(f"DELETE FROM {table} WHERE run_id IN (SELECT run_id FROM _ingest_batch)")
            for log in sources.LOGS:
                con.execute(f"DELETE FROM {log} WHERE run_id IN (SELECT run_id FROM _ingest_batch "
                            f"WHERE replace_{log})")
        _insert_columns(con, "runs", TYPES["runs"], [[s.row.get(c) for c in TYPES["runs"]] for s in batch])
        unreadable = parse.insert_rows(con)
        _insert_columns(con, "run_sources", TYPES["run_sources"], [[s.run.run_id, json.dumps(s.files)] for s in batch])
    return unreadable


def _why(staged: _Staged, exc: Exception) -> str:
    """Why a run could not be stored: the file at fault when one is, else the database's reason."""
    for kind, text in staged.texts.items():
        if kind in sources.LOGS:
            continue
        name = eval_name(kind)
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            return f"{name} is not valid JSON ({err})"
        if not isinstance(value, list if kind.startswith("per_class") else dict):
            return f"{name} is not a JSON {'array' if kind.startswith('per_class') else 'object'}"
    return f"cannot store it: {str(exc).splitlines()[0]}"


def _store_batch(con, batch: list[_Staged], report: IngestReport) -> None:
    try:
        done = [(batch, _store(con, batch))]
    except (duckdb.Error, parse.Misshapen):
        done = []
        for staged in batch:  # one at a time: store every good run, name every bad one
            try:
                done.append(([staged], _store(con, [staged])))
            except (duckdb.Error, parse.Misshapen) as exc:
                report.skipped.append((staged.run.path, _why(staged, exc)))
    for stored, unreadable in done:
        for s in stored:
            report.stored.append(s.run.run_id)
            report.warnings += [(s.run.run_id, w) for w in s.warnings]
            for log, name in sources.LOGS.items():
                if unreadable.get((s.run.run_id, log)):
                    report.warnings.append((s.run.run_id, f"{name}: {unreadable[s.run.run_id, log]} line(s) that "
                                                          "are not JSON objects, not stored"))


def _stored_sources(con, run_ids: list[str]) -> dict[str, dict]:
    rows = con.execute("SELECT run_id, files FROM run_sources WHERE run_id IN (SELECT unnest(?::VARCHAR[]))",
                       [run_ids]).fetchall()
    return {rid: json.loads(files) for rid, files in rows}


def ingest_runs(con, runs: list[RunDir], report: IngestReport | None = None) -> IngestReport:
    """Store ``runs`` (those that changed since they were stored), a batch at a time; a folder that
    cannot be stored is named in the report and skipped, a run that failed on bad input left out.
    Never raises for a bad folder."""
    report = report or IngestReport()
    parse.setup(con)
    runs = list({r.run_id: r for r in runs}.values())
    stored = _stored_sources(con, [r.run_id for r in runs])
    for start in range(0, len(runs), BATCH_RUNS):
        batch = []
        for run in runs[start:start + BATCH_RUNS]:
            try:
                states = sources.file_states(run)
                if sources.unchanged(stored.get(run.run_id), states):
                    report.unchanged.append(run.run_id)
                    continue
                batch.append(_stage(run, states, stored.get(run.run_id)))
            except LeftOut:
                report.left_out.append(run.run_id)
            except BadRun as exc:
                report.skipped.append((run.path, str(exc)))
            except OSError as exc:
                report.skipped.append((run.path, f"cannot read {exc.filename or 'it'}: {exc.strerror}"))
        if batch:
            _store_batch(con, batch, report)
    regroup(con, report.unchanged)
    return report


def regroup(con, run_ids: list[str]) -> int:
    """Give stored runs the identity this version resolves from their specs (``config.regrouped``):
    a run stored before a default was filled into specs joins the runs that computed the same, without
    being read again or retrained. Returns how many runs changed."""
    from ..config import regrouped

    rows = con.execute("SELECT run_id, config FROM runs WHERE run_id IN (SELECT unnest(?::VARCHAR[]))",
                       [run_ids]).fetchall()
    changed = []
    for run_id, text in rows:
        spec = json.loads(text) if text else {}
        new = regrouped(spec) if isinstance(spec, dict) else spec
        if new is not spec:
            changed.append((json.dumps(new, sort_keys=True, default=str), new["config_hash"], run_id))
    if changed:
        with transaction(con):
            con.executemany("UPDATE runs SET config = ?, config_hash = ? WHERE run_id = ?", changed)
    return len(changed)


def ingest_run(con, run: RunDir) -> IngestReport:
    """Store one run (when it changed); raises :class:`UserError` naming why it cannot be stored."""
    report = ingest_runs(con, [run])
    if report.skipped:
        raise UserError(report.skipped[0][1])
    return report


def ingest_dir(con, path: Path) -> IngestReport:
    """Ingest one run directory, or every run directory below ``path``. Runs that failed on bad input
    (``user_error`` in their status) are left out: they hold no result. Reads the run directories
    without changing them (a vanished run is recorded ``killed`` by ``runs.scheduler.recover`` first)."""
    return ingest_runs(con, find_runs(path))
