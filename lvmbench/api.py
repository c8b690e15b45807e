"""The library as the terminal UI reaches it: one module for everything the UI does to runs and
results — launch, cancel, resume, list, follow, ingest, query, tables — as harlequin's app reaches
its database only through its adapter. Torch-free; DuckDB loads on first use, in a worker.
"""
from __future__ import annotations

from .catalog import BACKBONES, DATASETS, DEFAULT_PRETRAINED, METHODS  # noqa: F401 - what the Launch form offers
from .config import IDENTITY, SCHEMA, check_identity, defaults, parse_sets, parse_value  # noqa: F401 - the form's settings
from .errors import UserError  # noqa: F401
from .paths import results_path, runs_dir  # noqa: F401
from .render import fmt, render  # noqa: F401 - numbers and exports as the CLI prints them
from .runs.process import request_cancel, signal_group, view  # noqa: F401 - view: a status, read only
from .runs.process import start as start_process  # noqa: F401 - a child not tied to the UI
from .runs.rundir import ACTIVE, DONE, RESUMABLE, RunDir, find_runs, list_runs, new_run_id, now  # noqa: F401
from .runs.scheduler import cancel, recover, recover_all  # noqa: F401 - the one cancel path, the one recovery
from .shots import shot_group  # noqa: F401
from .store import tables  # noqa: F401 - the study's tables (no DuckDB at import)


def open_readonly(path):
    """A read-only connection to the results database (DuckDB loads here, in the first worker)."""
    from .store import open_readonly as open_

    return open_(path)


def open_writer(path):
    """The writer's connection to the results database (one writer at a time)."""
    from .store import open_writer as open_

    return open_(path)


def ingest_runs(con, runs):
    """Store run directories (idempotent); reads them without changing them."""
    from .store.ingest import ingest_runs as ingest

    return ingest(con, runs)


def ingest_dir(con, path):
    """What ``lvmbench ingest`` stores: every run directory under ``path``."""
    from .store.ingest import ingest_dir as ingest

    return ingest(con, path)


def open_console(path):
    """The SQL console's read-only connection (``lvmbench sql``)."""
    from .store.console import open_console as open_

    return open_(path)


def run_query(con, sql: str, limit: int):
    """A query typed by the user, under the SQL console's rules."""
    from .store.console import run_query as run

    return run(con, sql, limit)


def describe_classes(summary: dict) -> str:
    """A dataset's class summary in words (numpy loads here, when a run's detail shows)."""
    from .data.summary import describe_classes as describe

    return describe(summary)
