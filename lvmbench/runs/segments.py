"""The cost of a run trained in several segments (killed or cancelled, then resumed).

Each segment's training child records its start in ``status.json`` (``segment_starts``) and
samples the machine into ``system.jsonl`` from the moment it trains until it ends. A segment that
was killed cannot say how long it ran, so its wall time and energy are read back from its own
samples: wall time from its first to its last sample (at most one sampling interval short),
energy from NVML's energy counter (else average power × wall time). The finished run's
``wall_s`` and ``energy_kwh`` add every segment, so cost tables count what the run really cost.
"""
from __future__ import annotations

from .rundir import RunDir


def _boards(samples: list[dict]) -> list[list[dict]]:
    """Samples per GPU board: power and energy are a board's, shared by the MIG instances on it."""
    boards: dict = {}
    for s in samples:
        boards.setdefault(s.get("board_uuid") or s.get("gpu_uuid") or s.get("gpu_index"), []).append(s)
    return list(boards.values())


def average_power(samples: list[dict]) -> float | None:
    """The run's average power (W): each board's mean, summed over boards (None: no power sample)."""
    means = [sum(p) / len(p) for p in ([s["power_w"] for s in rows if s.get("power_w") is not None]
                                       for rows in _boards(samples)) if p]
    return sum(means) if means else None


def energy_joules(samples: list[dict], wall_s: float) -> float | None:
    """Energy (J) over ``wall_s``: per board, its energy counter's increase, else (no counter on that
    board) its mean power × ``wall_s``; summed over boards. None when nothing measured power."""
    total = None
    for rows in _boards(samples):
        counter = [s["energy_j"] for s in rows if s.get("energy_j") is not None]
        power = [s["power_w"] for s in rows if s.get("power_w") is not None]
        if counter:
            part = counter[-1] - counter[0]
        elif power:
            part = sum(power) / len(power) * wall_s
        else:
            continue
        total = (total or 0.0) + part
    return total


def segment_cost(samples: list[dict]) -> dict:
    """Wall time (s) and energy (kWh, None when nothing measured power) of one segment's samples."""
    if not samples:
        return {"wall_s": 0.0, "energy_kwh": None}
    wall = max(s["ts"] for s in samples) - min(s["ts"] for s in samples)
    energy_j = energy_joules(samples, wall)
    return {"wall_s": wall, "energy_kwh": None if energy_j is None else energy_j / 3.6e6}


def earlier_segments(run: RunDir) -> list[dict]:
    """The cost of each segment of ``run`` before the current one (none for a run never resumed)."""
    starts = list(run.status().get("segment_starts") or [])
    if len(starts) < 2:
        return []
    samples = [s for s in run.system() if isinstance(s.get("ts"), (int, float))]
    bounds = list(zip(starts[:-1], starts[1:]))
    return [segment_cost([s for s in samples if lo <= s["ts"] < hi]) for lo, hi in bounds]


def total_cost(run: RunDir, wall_s: float, energy_kwh: float | None, part: float = 1.0) -> dict:
    """``wall_s`` and ``energy_kwh`` of the current segment plus those of every earlier one. ``part``:
    the run's part of what its process cost (a member of a fused group, see ``lvmbench.runs.fused``): its
    samples are the whole process's, so earlier segments count in the same part as the current one."""
    earlier = [{"wall_s": s["wall_s"] * part, "energy_kwh": None if s["energy_kwh"] is None else s["energy_kwh"] * part}
               for s in earlier_segments(run)]
    energies = [e for e in [energy_kwh, *(s["energy_kwh"] for s in earlier)] if e is not None]
    return {"wall_s": wall_s + sum(s["wall_s"] for s in earlier),
            "energy_kwh": sum(energies) if energies else None, "segments": len(earlier) + 1}


def group_cost(run: RunDir, wall_s: float, energy_kwh: float | None) -> dict:
    """A fused group's ``group_wall_s`` and ``group_energy_kwh``: its process's cost in this segment
    plus every earlier one (read from a member's samples, which are the whole process's), so that they
    equal the sum of the members' shares after a resume as without one."""
    total = total_cost(run, wall_s, energy_kwh)
    return {"group_wall_s": total["wall_s"], "group_energy_kwh": total["energy_kwh"]}
