"""Row-by-row ingest (lvmbench before columnar ingest) against the current one, on the same run folders.

    python bench/ingest_before_after.py RUNS_DIR [N] [BEFORE_COMMIT]

Copies the first N run folders of RUNS_DIR (e.g. made by ``lvmbench bench --ingest 1000
--ingest-dir DIR``, then DIR/runs) to a temporary folder, ingests them into a new database with
the lvmbench of BEFORE_COMMIT (``git archive``) and with this checkout, one after the other, prints
wall and CPU seconds of each, and checks that both databases hold the same rows.
"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BEFORE = "84ef4ae"  # the last commit with the row-by-row (executemany) ingest
TABLES = ("runs", "evals", "metrics", "system", "per_class")
INGEST = """
import sys, time
from pathlib import Path
from lvmbench.store import open_writer
from lvmbench.store.ingest import ingest_dir
wall, cpu = time.perf_counter(), time.process_time()
with open_writer(Path(sys.argv[1])) as con:
    ingest_dir(con, Path(sys.argv[2]))
    rows = con.execute("SELECT count(*) FROM metrics").fetchone()[0]
print(rows, round(time.perf_counter() - wall, 2), round(time.process_time() - cpu, 2))
"""


def main(runs_dir: str, n: int = 50, before: str = BEFORE) -> None:
    import duckdb

    here = Path(__file__).resolve().parent.parent
    tmp = Path(tempfile.mkdtemp(prefix="lvmbench-before-after-"))
    try:
        old = tmp / "before"
        old.mkdir()
        archive = subprocess.run(["git", "-C", str(here), "archive", before, "lvmbench"], capture_output=True,
                                 check=True)
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
        runs = tmp / "runs"
        for name in sorted(os.listdir(runs_dir))[:n]:
            shutil.copytree(Path(runs_dir) / name, runs / name)
        print("ingest      metric rows  wall s  CPU s")
        for label, path in (("before", old), ("now", here)):
            out = subprocess.run([sys.executable, "-c", INGEST, str(tmp / f"{label}.duckdb"), str(runs)],
                                 env={**os.environ, "PYTHONPATH": str(path)}, capture_output=True, text=True,
                                 check=True)
            print(f"{label:10s}  " + "  ".join(out.stdout.split()))
        a, b = (duckdb.connect(str(tmp / f"{label}.duckdb"), read_only=True) for label in ("before", "now"))
        for table in TABLES:
            same = (a.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
                    == b.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall())
            print(f"{table}: {'same rows' if same else 'DIFFERENT'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:3]), *sys.argv[3:4])
