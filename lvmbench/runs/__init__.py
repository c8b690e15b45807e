"""A run's life in one place, torch-free (the UI imports it).

- :mod:`.rundir` — the run directory: every file name, and every status transition as a method.
- :mod:`.process` — starting, signalling and stopping processes; whether a run lives (changes no status).
- :mod:`.plan` — the one planner of ``lvmbench run`` and ``lvmbench sweep``, with sweep claims.
- :mod:`.scheduler` — the one way to run: starts planned jobs on an executor (fused groups formed by
  one function), follows, cancels (one path) and ingests them; the parent side's status transitions.
- :mod:`.segments` — the cost (wall time, energy) of a run trained in several segments.
"""
