"""A run's life in one place, torch-free (the UI imports it).

- :mod:`.rundir` — the run directory: every file name, and every status transition as a method.
- :mod:`.process` — starting, signalling, cancelling and finalizing processes; whether a run lives;
  orphan recovery. Used by the CLI, the local and Slurm executors and the UI alike.
- :mod:`.plan` — the one planner of ``lvmbench run`` and ``lvmbench sweep``, with sweep claims.
- :mod:`.segments` — the cost (wall time, energy) of a run trained in several segments.
"""
