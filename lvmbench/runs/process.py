"""Process control of runs, shared by the CLI, the local and Slurm executors and the UI: start a
process, signal its group, tell whether a run's process lives, cancel, finalize, recover orphans.

A run has one live owner: the process that holds its directory's lock (``RunDir.lock``) — the
``lvmbench run`` or sweep that started it, with its training child, which inherits the lock.
The OS releases the lock when they die, so "is this run alive" is "is its lock held" (on this
host; a run on another host is trusted to live). A run left ``running`` whose owner is gone is
recorded ``killed`` (by :func:`recover`): the one word for a run whose process vanished; it
resumes like any killed run. A foreground owner's child dies with it (Linux parent-death signal).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .. import paths
from ..errors import UserError, suggest
from .rundir import ACTIVE, DONE, Lock, RunDir, check_id_form, list_runs

CANCEL_WAIT_S = 10.0  # how long a cancelled child may take to stop before it is killed
_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux; elsewhere nothing).
    Runs between fork and exec of a child, so it must not allocate much nor raise."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except Exception:  # noqa: BLE001 - no prctl: the child may outlive its parent, as elsewhere
        return


def start(argv: list[str], log_file: Path, env: dict | None = None, tied: bool = True,
          keep: Lock | list[Lock] | None = None) -> subprocess.Popen:
    """Start ``argv`` in its own session (its own process group), no stdin, output appended to
    ``log_file``. ``tied``: it dies when this process dies (a foreground owner's child); else it may
    outlive it (the UI's runs). ``keep``: the lock (or locks) the child inherits, so that what they
    guard stays owned while it lives."""
    keep = [keep] if isinstance(keep, Lock) else list(keep or [])
    if tied:
        parent = os.getpid()

        def preexec() -> None:
            die_with_parent()
            if os.getppid() != parent:  # the parent died before the signal was armed
                os._exit(1)
    else:
        preexec = None
    with open(log_file, "ab") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=preexec,
                                pass_fds=tuple(lock.fd for lock in keep if lock.fd is not None),
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def child_command(run: RunDir, debug: bool = False, nproc: int = 1, members: list[RunDir] = ()) -> list[str]:
    """``python -m lvmbench.train RUN_DIR [MEMBER_DIR ...]`` (``members``: the rest of a fused group);
    with ``nproc`` > 1 the same through torchrun, one process per GPU (or per CPU share),
    data-parallel (see ``lvmbench.train.distributed``)."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] if nproc > 1 else []
    dirs = [str(r.path) for r in (run, *members)]
    return [sys.executable, *launcher, "-m", "lvmbench.train", *dirs] + (["--debug"] if debug else [])


def spawn(run: RunDir, env: dict | None = None, debug: bool = False, nproc: int = 1,
          owner: Lock | None = None, members: list[RunDir] = (), member_owners: list[Lock] = (),
          claims: list[Lock] = ()) -> subprocess.Popen:
    """Start the training child of ``run`` (tied to this process), output to the run's ``stdout.log``;
    ``members``: the other runs of a fused group it trains too (each writes its own lines to its own
    log). ``owner`` (``member_owners``): this process's lock on the run (on each member), taken here
    when not given; the child inherits them all, so every member is owned like a lone run. ``claims``:
    locks on the GPUs it trains on (``lvmbench.runs.devices.claim``), inherited and released alike."""
    given = [owner, *member_owners]
    locks, taken = [], []
    try:
        for i, r in enumerate([run, *members]):
            lock = given[i] if i < len(given) else None
            if lock is None:
                lock = own(r)
                taken.append(lock)
            locks.append(lock)
        proc = start(child_command(run, debug, nproc, members), run.log_file, env, tied=True, keep=locks + list(claims))
    except BaseException:
        release_owners(taken)
        raise
    proc.owner, proc.owners = locks[0], locks + list(claims)  # released by :func:`reap` once the child has ended
    return proc


def release_owners(locks: list[Lock | None]) -> None:
    for lock in locks:
        if lock is not None:
            lock.release()


def _release(proc: subprocess.Popen | None) -> None:
    if proc is not None:
        release_owners(getattr(proc, "owners", None) or [getattr(proc, "owner", None)])


def reap(run: RunDir, proc: subprocess.Popen) -> dict:
    """After the child of ``run`` has ended: its final status (see :func:`finalize`); the run's lock
    goes back."""
    return reap_group([run], proc)[0]


def reap_group(runs: list[RunDir], proc: subprocess.Popen) -> list[dict]:
    """After the child of a fused group has ended: each member's final status; their locks go back."""
    statuses = [finalize(run, proc.returncode) for run in runs]
    _release(proc)
    return statuses


def own(run: RunDir) -> Lock:
    """Take the run's owner lock; refuse (one line) when another process owns it."""
    lock = run.lock()
    if not lock.acquire():
        status = run.status()
        raise UserError(f"run {run.run_id} is still running (pid {status.get('pid')}); cancel it first")
    return lock


def signal_group(pid: int, sig: int) -> bool:
    """Send ``sig`` to the process group of ``pid``; whether there was one to signal."""
    try:
        os.killpg(os.getpgid(pid), sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _pid_runs(pid: int, run: RunDir) -> bool:
    """Whether ``pid`` is a live process of ``run`` (not a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return run.run_id in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return True


def alive(run: RunDir, status: dict | None = None) -> bool:
    """Whether the process of ``run`` still lives: its owner lock is held, or (a run on another host)
    its status names a pid there, or (a run whose owner took no lock) its pid is one of its processes."""
    status = run.status() if status is None else status
    if run.lock().held_elsewhere():
        return True
    pid = status.get("pid")
    if not pid:
        return False
    if status.get("host") not in (None, socket.gethostname()):
        return True  # another machine's run (e.g. Slurm): assume it lives
    return _pid_runs(int(pid), run)


def recover(run: RunDir) -> dict:
    """A run left ``running`` whose process is gone (its owner died, the machine rebooted) is killed."""
    status = run.status()
    if status.get("status") == "running" and not alive(run, status):
        return run.mark_killed(f"training process {status.get('pid')} is gone (its owner died or it was "
                               f"killed); continue it with: {paths.resume_command(run.run_id, run.path.parent)}")
    return status


def recover_all(runs: list[RunDir]) -> None:
    for run in runs:
        recover(run)


def finalize(run: RunDir, returncode: int | None) -> dict:
    """Give a run whose child died without a final status one: ``cancelled`` when someone asked for
    it, ``killed`` by another signal, else ``failed``."""
    status = run.status()
    if status.get("status") in DONE:
        return status
    if run.cancel_file.exists():  # asked for, whatever the exit code (torchrun exits 1 when its workers are stopped)
        return run.mark_cancelled()
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        return run.mark_killed(f"killed by {name}")
    return run.mark_failed(f"child exited with code {returncode}")


def _stop(pid: int | None, proc: subprocess.Popen | None) -> None:
    """SIGTERM the process group of ``pid``; wait for ``proc`` (SIGKILL after :data:`CANCEL_WAIT_S`)."""
    if pid:
        signal_group(pid, signal.SIGTERM)
    if proc:
        try:
            proc.wait(timeout=CANCEL_WAIT_S)
        except subprocess.TimeoutExpired:
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait()


def cancel(run: RunDir, proc: subprocess.Popen | None = None) -> dict:
    """As the run's owner: stop its child's whole process group and record the run ``cancelled``."""
    _stop(proc.pid if proc else run.status().get("pid"), proc)
    status = run.status() if run.state() == "finished" else run.mark_cancelled()
    _release(proc)
    return status


def cancel_group(runs: list[RunDir], proc: subprocess.Popen | None = None) -> list[dict]:
    """As the owner of a fused group's child: stop it and record ``cancelled`` each member that had
    not ended."""
    _stop(proc.pid if proc else runs[0].status().get("pid"), proc)
    statuses = [run.status() if run.state() in DONE else run.mark_cancelled() for run in runs]
    _release(proc)
    return statuses


def stop_child(pid: int, grace_s: float = CANCEL_WAIT_S) -> bool:
    """SIGTERM a child's process group, SIGKILL it after ``grace_s``, reap it; False if it had ended.
    Without ``Popen.wait`` (a signal handler may call it while that wait holds its lock)."""
    try:
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return False
        os.killpg(pid, signal.SIGTERM)  # the child leads its own session (see start)
        deadline = time.monotonic() + grace_s
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.1)
    except (ChildProcessError, ProcessLookupError):
        return False
    return True


def owned_here(run: RunDir, status: dict | None = None) -> str | None:
    """Why this user cannot cancel ``run`` from here (None when they can): it must be running on
    this host, in a process of this user."""
    status = run.status() if status is None else status
    pid = status.get("pid")
    if status.get("status") not in ACTIVE:
        return f"{run.run_id} is {status.get('status')}"
    if not pid or not alive(run, status):
        return f"{run.run_id} has no training process yet"
    if status.get("host") not in (None, socket.gethostname()):
        return f"{run.run_id} runs on {status.get('host')}"
    try:
        if os.stat(f"/proc/{pid}").st_uid != os.getuid():
            return f"{run.run_id} belongs to another user"
    except OSError:
        pass
    return None


def request_cancel(run: RunDir) -> str | None:
    """Cancel a run whoever started it: leave a request its owner reads, then stop the training
    child's group (its owner records ``cancelled``). Returns why it could not (None: sent)."""
    status = run.status()
    refused = owned_here(run, status)
    if refused:
        return refused
    run.cancel_file.touch()
    if not signal_group(int(status.get("group_pid") or status["pid"]), signal.SIGTERM):  # every rank of the run
        return f"{run.run_id}: its process has already ended"
    return None


def wait(proc: subprocess.Popen, run: RunDir, on_poll=None, interval: float = 0.5) -> dict:
    """Wait for a child, calling ``on_poll(step)`` as it trains; return its final status."""
    return wait_group(proc, [run], on_poll and (lambda steps: on_poll(steps[0])), interval)[0]


def wait_group(proc: subprocess.Popen, runs: list[RunDir], on_poll=None, interval: float = 0.5) -> list[dict]:
    """Wait for the child of a fused group, calling ``on_poll(steps)`` (one per run) as it trains;
    return each run's final status."""
    poll = (lambda: on_poll([r.last_step() for r in runs])) if on_poll else (lambda: None)
    while proc.poll() is None:
        poll()
        time.sleep(interval)
    poll()
    return reap_group(runs, proc)


def group_members(runs_dir: Path, run: RunDir) -> list[RunDir]:
    """``run`` and the other runs of its fused group that ended as it did (killed, failed or cancelled):
    what a resume continues together."""
    spec = run.spec_or_none() or {}
    group, state = spec.get("fused_group"), run.state()
    if not group:
        return [run]
    others = [r for r in list_runs(runs_dir) if r.run_id != run.run_id
              and (r.spec_or_none() or {}).get("fused_group") == group and recover(r).get("status") == state]
    return [run, *others]


def resumable(runs_dir: Path, run_id: str) -> tuple[RunDir, Lock]:
    """The run ``run_id``, checked to be one that can continue (failed, killed or cancelled), and its
    owner lock, now held by this process: a second ``--resume`` of it is refused while this one runs."""
    check_id_form(run_id, "--resume")
    run = RunDir(Path(runs_dir) / run_id)
    if not run.exists():
        ids = [r.run_id for r in list_runs(runs_dir)]
        raise UserError(f"no run {run_id} in {runs_dir}{suggest(run_id, ids)}")
    damaged = run.unreadable()
    if damaged:
        raise UserError(f"run {run_id} cannot be resumed: {damaged}")
    status = recover(run)
    state = status.get("status")
    if state == "finished":
        raise UserError(f"run {run_id} already finished; nothing to resume")
    lock = run.lock()
    if state == "running" or not lock.acquire() or (state == "queued" and alive(run, status)):
        lock.release()
        raise UserError(f"run {run_id} is still running (pid {status.get('pid')}); cancel it first")
    return run, lock
