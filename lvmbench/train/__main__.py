"""Child entry point: ``python -m lvmbench.train RUN_DIR`` trains one run and writes its directory."""
from __future__ import annotations

import sys
import traceback

from ..errors import UserError
from ..rundir import RunDir, now


def main(argv: list[str]) -> int:
    run = RunDir(argv[0])
    debug = "--debug" in argv
    try:
        from .loop import train_run

        train_run(run)
        return 0
    except UserError as exc:
        error = str(exc)
        print(f"error: {error}", file=sys.stderr, flush=True)
        if debug:
            traceback.print_exc()
    except MemoryError:
        error = "out of memory: lower train.batch_size or use a smaller backbone"
        traceback.print_exc()
    except Exception as exc:  # noqa: BLE001 - the run must end with a status whatever happened
        error = f"{type(exc).__name__}: {exc}"
        if "out of memory" in str(exc).lower():
            error = f"out of memory ({exc.__class__.__name__}): lower train.batch_size or use a smaller backbone"
        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    run.write_status(status="failed", ended_at=now(), error=error.splitlines()[0] if error else "failed",
                     log_tail=run.log_tail(50))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
