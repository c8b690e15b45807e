"""The parent side of a run: prepare its directory, start the training child, follow it, ingest it.

The child (``python -m lvmbench.train RUN_DIR``) writes only its run directory; this process
is the one that writes the results database.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from . import catalog, config
from .rundir import DONE, RunDir, list_runs, now

STAGE1_METHOD = "ce"
# Every setting of a two-stage run is shared with its stage-1 run but these: so a grid's own ``ce``
# run (same --set) is the stage-1 run of its two-stage runs.
# ``train.decay_params`` is one of them: under recipe=reference only stage 2 decays every parameter.
STAGE1_OWN = ("loss", "stage1.run_id", "train.decay_params")


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def prepare(spec: dict, runs_dir: Path, sweep_id: str | None = None, run_id: str | None = None,
            fused_group: str | None = None, fused_size: int = 1) -> RunDir:
    """Create the run directory (status ``queued``) with the full resolved spec (and, for a member
    of a fused group, the group's id and size)."""
    spec = {**spec, "config_hash": config.config_hash(spec), "git_sha": git_sha(), "sweep_id": sweep_id}
    if fused_group:
        spec.update(fused_group=fused_group, fused_size=fused_size)
    return RunDir.create(Path(runs_dir), spec, run_id=run_id)


def prepare_group(specs: list[dict], runs_dir: Path, sweep_id: str | None = None) -> list[RunDir]:
    """The run directories of specs that train together (one fused group; one spec: a plain run)."""
    from .fused import new_group_id

    group = new_group_id() if len(specs) > 1 else None
    return [prepare(s, runs_dir, sweep_id, fused_group=group, fused_size=len(specs)) for s in specs]


def child_command(run: RunDir, debug: bool = False, nproc: int = 1, members: list[RunDir] = ()) -> list[str]:
    """``python -m lvmbench.train RUN_DIR [MEMBER_DIR ...]`` (``members``: the rest of a fused group);
    with ``nproc`` > 1 the same through torchrun, one process per GPU (or per CPU share),
    data-parallel (see ``lvmbench.train.distributed``)."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] if nproc > 1 else []
    dirs = [str(r.path) for r in (run, *members)]
    return [sys.executable, *launcher, "-m", "lvmbench.train", *dirs] + (["--debug"] if debug else [])


def spawn(run: RunDir, env: dict | None = None, debug: bool = False, nproc: int = 1,
          members: list[RunDir] = ()) -> subprocess.Popen:
    """Start the training child in its own session, no stdin, output to the (first) run's ``stdout.log``;
    the other members of a fused group write their own lines to theirs."""
    cmd = child_command(run, debug, nproc, members)
    log = open(run.log_file, "ab")
    try:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    finally:
        log.close()


def finalize(run: RunDir, returncode: int | None) -> dict:
    """Give a run whose child died without a final status one: ``killed`` by a signal, else ``failed``."""
    status = run.status()
    if status.get("status") in DONE:
        return status
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        return run.write_status(status="killed", ended_at=now(), error=f"killed by {name}", log_tail=run.log_tail(50))
    return run.write_status(status="failed", ended_at=now(), error=f"child exited with code {returncode}",
                            log_tail=run.log_tail(50))


def cancel(run: RunDir, proc: subprocess.Popen | None = None) -> dict:
    """Stop a running child's whole process group and record the run as cancelled."""
    pid = proc.pid if proc else run.status().get("pid")
    if pid:
        try:
            os.killpg(os.getpgid(pid), signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    if proc:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return run.write_status(status="cancelled", ended_at=now(), error="cancelled by the user",
                            log_tail=run.log_tail(50))


def progress_step(run: RunDir) -> int:
    """The last training step the run has logged (cheap: reads the file's tail)."""
    path = run.metrics_file
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 4096))
        lines = f.read().decode(errors="replace").splitlines()
    import json

    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0


def finished_runs(runs_dir: Path) -> dict[str, RunDir]:
    """The latest finished run of each config hash (lets sweeps skip done work)."""
    return {spec.get("config_hash"): r for r in list_runs(runs_dir)
            if r.status().get("status") == "finished" and (spec := r.spec_or_none()) is not None}


def find_finished(runs_dir: Path, config_hash: str) -> RunDir | None:
    """The latest finished run with this config hash, if any."""
    return finished_runs(runs_dir).get(config_hash)


def stage1_spec(spec: dict) -> dict:
    """The stage-1 (``ce``) spec a two-stage run starts from: same data, backbone, seed and recipe."""
    shared = {k: v for k, v in spec.items() if k in config.SCHEMA and k not in STAGE1_OWN}
    return config.resolve(spec["dataset"], spec["backbone"], STAGE1_METHOD, seed=spec["seed"],
                          pretrained=spec["pretrained"], data_root=spec["data_root"], overrides=shared)


def needs_stage1(spec: dict) -> bool:
    return catalog.method(spec["method"]).stage == 2 and not spec.get("stage1.run_id")


def wait_group(proc: subprocess.Popen, runs: list[RunDir], on_poll=None, interval: float = 0.5) -> list[dict]:
    """Wait for the child of a fused group, calling ``on_poll(steps)`` (one per run) as it trains;
    return each run's final status."""
    poll = (lambda: on_poll([progress_step(r) for r in runs])) if on_poll else (lambda: None)
    while proc.poll() is None:
        poll()
        time.sleep(interval)
    poll()
    return [finalize(run, proc.returncode) for run in runs]


def cancel_group(runs: list[RunDir], proc: subprocess.Popen | None = None) -> None:
    """Stop a fused group's child and record as cancelled each member that had not ended."""
    for run in runs:
        if run.status().get("status") not in DONE:
            cancel(run, proc)


def group_members(runs_dir: Path, run: RunDir) -> list[RunDir]:
    """``run`` and the other runs of its fused group that ended as it did (killed, failed or cancelled):
    what a resume continues together."""
    group, state = run.spec().get("fused_group"), run.status().get("status")
    if not group:
        return [run]
    others = [r for r in list_runs(runs_dir) if r.spec().get("fused_group") == group and r.run_id != run.run_id
              and recover(r).get("status") == state]
    return [run, *others]


def wait(proc: subprocess.Popen, run: RunDir, on_poll=None, interval: float = 0.5) -> dict:
    """Wait for a child, calling ``on_poll(step)`` as it trains; return its final status."""
    return wait_group(proc, [run], on_poll and (lambda steps: on_poll(steps[0])), interval)[0]


def child_alive(run: RunDir, status: dict) -> bool:
    """Whether the training process of ``run`` that ``status`` names still runs (checked on its host)."""
    pid = status.get("pid")
    if not pid or status.get("host") not in (None, socket.gethostname()):
        return bool(pid)  # another machine's run (e.g. Slurm): assume it lives
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # the pid may have been reused by an unrelated process
        return run.run_id in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return True


def recover(run: RunDir) -> dict:
    """A run left ``running`` whose process is gone (its parent died, the machine rebooted) is killed."""
    status = run.status()
    if status.get("status") == "running" and not child_alive(run, status):
        return run.write_status(status="killed", ended_at=now(), log_tail=run.log_tail(50),
                                error=f"training process {status.get('pid')} is gone (its parent died or it was "
                                      f"killed); continue it with: lvmbench run --headless --resume {run.run_id}")
    return status


def resumable(runs_dir: Path, run_id: str) -> RunDir:
    """The run ``run_id``, checked to be one that can continue: failed, killed or cancelled."""
    from .errors import UserError, suggest

    run = RunDir(Path(runs_dir) / run_id)
    if not run.exists():
        ids = [r.run_id for r in list_runs(runs_dir)]
        raise UserError(f"no run {run_id} in {runs_dir}{suggest(run_id, ids)}")
    status = recover(run)
    state = status.get("status")
    if state == "finished":
        raise UserError(f"run {run_id} already finished; nothing to resume")
    if state == "running" or (state == "queued" and child_alive(run, status)):
        raise UserError(f"run {run_id} is still running (pid {status.get('pid')}); cancel it first")
    return run


def reopen(run: RunDir) -> dict:
    """Mark a resumable run ``queued`` again (its child continues from ``ckpt/last.pt``)."""
    status = run.status()
    return run.write_status(status="queued", resumed_at=now(), resumes=status.get("resumes", 0) + 1,
                            ended_at=None, error=None, user_error=None, log_tail=None)


INTERRUPTED = ("killed", "cancelled")


def interrupted_runs(runs_dir: Path) -> dict[str, RunDir]:
    """The latest killed or cancelled run of each config hash that left a checkpoint: a sweep run
    again continues it in its directory instead of starting it over."""
    out = {}
    for run in list_runs(runs_dir):
        if recover(run).get("status") in INTERRUPTED and (run.ckpt_dir / "last.pt").exists():
            out[run.spec().get("config_hash")] = run
    return out


def start_or_continue(run: RunDir | None, spec: dict, runs_dir: Path, sweep_id: str | None = None) -> RunDir:
    """A sweep job's run directory: the interrupted run it continues (reopened), else a new one."""
    if run is not None:
        reopen(run)
        return run
    return prepare(spec, runs_dir, sweep_id)
