"""Kept for imports: a run's process control and planning live in :mod:`lvmbench.runs`."""
from .runs.plan import (find_finished, finished_runs, interrupted_runs, needs_stage1, prepare,  # noqa: F401
                        prepare_group, stage1_spec, start_or_continue)
from .runs.rundir import INTERRUPTED  # noqa: F401
from .runs.process import (cancel, cancel_group, child_command, finalize, group_members, recover,  # noqa: F401
                           spawn, wait, wait_group)
