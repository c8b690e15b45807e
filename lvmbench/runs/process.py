"""Process control of runs, shared by the scheduler, the executors and the UI: start a process,
signal and stop its group, tell whether a run's process lives. It changes no run's status (that is
:mod:`.scheduler`'s, on the parent side).

A run has one live owner: the process that holds its directory's lock (``RunDir.lock``) — the
``lvmbench run`` or sweep that started it, with its training child, which inherits the lock.
The OS releases the lock when they die, so "is this run alive" is "is its lock held" (on this
host; a run on another host is trusted to live). A run left ``running`` whose owner is gone is
recorded ``killed`` (by ``scheduler.recover``): the one word for a run whose process vanished; it
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
from ..errors import UserError
from .rundir import ACTIVE, Lock, RunDir

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
    proc.owners = locks + list(claims)  # released (:func:`release_owners`) once the child has ended
    return proc


def release_owners(locks: list[Lock | None]) -> None:
    for lock in locks:
        if lock is not None:
            lock.release()


def own(run: RunDir) -> Lock:
    """Take the run's owner lock; refuse (one line) when another process owns it."""
    lock = run.lock()
    if not lock.acquire():
        raise UserError(f"run {run.run_id} is still running (pid {live_owner(run, lock)}); cancel it first")
    return lock


def live_owner(run: RunDir, lock: Lock) -> int | str:
    """The live process that owns ``run``: the one that took its lock, else its training child."""
    for pid in (lock.holder(), run.status().get("pid")):
        if isinstance(pid, int) and pid > 0:
            try:
                os.kill(pid, 0)
                return pid
            except ProcessLookupError:
                continue
            except PermissionError:
                return pid
    return "unknown"


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


def vanished(run: RunDir, status: dict) -> str | None:
    """Why a run left ``running`` has no process any more (its owner died, the machine rebooted), or None."""
    if status.get("status") == "running" and not alive(run, status):
        return (f"training process {status.get('pid')} is gone (its owner died or it was killed); "
                f"continue it with: {paths.resume_command(run.run_id, run.path.parent)}")
    return None


def view(run: RunDir) -> dict:
    """The run's status, a vanished run's as ``killed``, without writing anything (for readers;
    ``lvmbench.runs.scheduler.recover`` records it)."""
    status = run.status()
    why = vanished(run, status)
    return {**status, "status": "killed", "error": why} if why else status


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM a child's process group and wait for it (SIGKILL after :data:`CANCEL_WAIT_S`)."""
    signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=CANCEL_WAIT_S)
    except subprocess.TimeoutExpired:
        signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


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


