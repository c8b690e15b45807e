"""Kept for imports: the run directory lives in :mod:`lvmbench.runs.rundir`."""
from .runs.rundir import *  # noqa: F401,F403
from .runs.rundir import RUN_ID_RE, atomic_write_json, check_run_id, find_runs, list_runs, new_run_id, now  # noqa: F401
