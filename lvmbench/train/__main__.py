"""Child entry point: ``python -m lvmbench.train RUN_DIR [RUN_DIR ...]`` trains one run (or a fused
group of runs) and writes their directories."""
from __future__ import annotations

import os
import sys
import traceback

from ..errors import UserError
from ..paths import is_no_space, no_space
from ..runs.devices import take_rank_share
from ..runs.rundir import DONE, RunDir


def out_of_memory(run: RunDir, exc: BaseException) -> str:
    """The one-line reason of an out-of-memory failure, naming the settings to lower."""
    from .. import catalog

    spec = run.spec()
    kind = catalog.method(spec["method"]).kind
    where = "GPU" if "cuda" in f"{type(exc).__name__} {exc}".lower() else "host"
    hints = [f"lower train.batch_size (now {spec['train.batch_size']})"]
    if kind == "full_finetune" and not spec.get("finetune.grad_checkpointing"):
        hints.append("set finetune.grad_checkpointing=true")
    if kind == "coop":
        hints.append(f"lower coop.class_chunk (now {spec.get('coop.class_chunk')})")
    if spec.get("cache.mode") != "off" and kind in ("decoder", "stage2"):
        hints.append("set cache.mode=off")
    return f"out of {where} memory: {', '.join(hints)}, or use a smaller backbone"


def no_space_line(run: RunDir, exc: BaseException) -> str:
    """The one line of a write that found its disk full: the device and the file (the run's folder
    when the error does not name one)."""
    if isinstance(exc, OSError) and (exc.strerror or "").startswith("no space left on"):
        return exc.strerror  # already names them (``checkpoint.atomic_save``)
    return no_space(exc.filename if isinstance(exc, OSError) and exc.filename else run.path)


def one_line(error: str) -> str:
    """The first line of an error; for one re-raised from a DataLoader worker, the original's message."""
    lines = [line for line in error.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught "):
        return lines[-1].split(": ", 1)[-1]
    return lines[0] if lines else "failed"


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


def failure_fields(run: RunDir, exc: BaseException, debug: bool = False) -> dict:
    """The ``failed`` status of a run that raised ``exc`` (printed first: one line for a user error)."""
    user_error = isinstance(exc, UserError)
    if user_error or is_no_space(exc):  # one line: the cause, not a traceback
        error = one_line(str(exc)) if user_error else no_space_line(run, exc)
        print(f"error: {error}", file=sys.stderr, flush=True)
        if debug:
            traceback.print_exception(exc)
    else:
        traceback.print_exception(exc)
        error = out_of_memory(run, exc) if is_out_of_memory(exc) else f"{type(exc).__name__}: {exc}"
    sys.stdout.flush()
    sys.stderr.flush()
    return {"error": one_line(error), "user_error": user_error}


def main(argv: list[str]) -> int:
    """Train the runs named on the command line: one run, or a fused group (each member's failure is
    its own; a failure of what they share fails every member that has not ended)."""
    runs = [RunDir(a) for a in argv if not a.startswith("--")]
    debug = "--debug" in argv
    dist = None
    # Before torch starts: this rank's part of the child's cores, and cuBLAS's deterministic workspace.
    take_rank_share(os.environ, int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    try:
        from ..runs.process import die_with_parent
        from .distributed import setup, teardown
        from .loop import train_group, train_run

        if "LOCAL_RANK" in os.environ:  # a torchrun worker dies with torchrun, as torchrun with its owner
            die_with_parent()
        dist = setup()  # several processes under torchrun: only rank 0 writes the run directory
        if len(runs) == 1:
            train_run(runs[0], dist)
        else:
            def member_failed(run: RunDir, exc: BaseException) -> None:
                if dist.main:
                    run.mark_failed(**failure_fields(run, exc, debug))

            train_group(runs, dist, on_failure=member_failed)
        teardown()
        return 0
    except Exception as exc:  # noqa: BLE001 - the run must end with a status whatever happened
        if dist is None or dist.main:
            for run in runs:
                if run.state() not in DONE:
                    run.mark_failed(**failure_fields(run, exc, debug))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
