"""Reliability end to end (slow, real training children): a run SIGKILLed at two different points and
resumed ends exactly like an uninterrupted one; bad images found while training."""
import os
import signal
import time

import numpy as np
import pytest
from PIL import Image

from lvmbench import cli, config
from lvmbench.exec import runner
from lvmbench.runs.rundir import TIMESTAMP, RunDir
from lvmbench.exec.local import LocalChild
from lvmbench.runs import process, scheduler
from lvmbench.runs.scheduler import prepare
from lvmbench.store import open_readonly
from lvmbench.train.loop import train_run

from .conftest import trained_metrics


# Checkpoints at 5, 10, 15, 20 and 24; validation at 8, 16 and 24; every step logged.
BUDGET = ["train.iters=24", "train.batch_size=16", "train.eval_every=8", "train.warmup_iters=2",
          "train.log_every=1", "train.threads=1", "ckpt.every=5"]


def kill_at(run, step: int) -> dict:
    """Start the run's child, SIGKILL it once it has logged ``step``, and let the parent record it."""
    proc = process.spawn(run)
    while run.last_step() < step:
        assert proc.poll() is None, f"the child ended before step {step}: {run.log_tail(5)}"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return scheduler.reap([run], LocalChild(proc))[0]


@pytest.mark.slow
def test_killed_runs_resume_exactly(store, random_tiny_clip):  # noqa: F811
    results, runs = store
    spec = config.resolve("mnist-lt", "tiny-clip", "ce", pretrained=random_tiny_clip,
                          overrides=config.parse_sets(BUDGET))
    reference = prepare(spec, runs)
    train_run(reference)
    for kill_step in (7, 17):  # before any validation; after one, with a best-so-far to carry over
        run = prepare(spec, runs)
        killed = kill_at(run, kill_step)
        assert killed["status"] == "killed" and killed["error"] == "killed by SIGKILL"
        assert f"step {kill_step}/24" in killed["log_tail"]
        scheduler.ingest_quietly(results, run)
        with open_readonly(results) as con:
            assert con.execute("SELECT status FROM runs WHERE run_id = ?", [run.run_id]).fetchone() == ("killed",)

        assert (run.ckpt_dir / "last.pt").exists()
        if kill_step == 7:  # as `lvmbench run --headless --resume RUN_ID` does it
            status = runner.resume_headless(run.run_id, runs, results)
            assert "resuming from step " in run.log_file.read_text()
        else:  # the same, with the training in this process (a child less to start)
            resumed, owner = scheduler.resumable(runs, run.run_id)
            resumed.reopen()
            owner.release()
            status = train_run(run)
            scheduler.ingest_quietly(results, run)
        assert status["status"] == "finished" and status["resumes"] == 1
        for split in ("val", "test"):
            assert run.evaluation(split) == reference.evaluation(split)
            assert run.per_class(split) == reference.per_class(split)
        assert trained_metrics(run) == trained_metrics(reference)
        assert status["best_step"] == reference.status()["best_step"]
        with open_readonly(results) as con:
            assert con.execute("SELECT status FROM runs WHERE run_id = ?", [run.run_id]).fetchone() == ("finished",)
            n = con.execute("SELECT count(*) FROM metrics WHERE run_id = ?", [run.run_id]).fetchone()[0]
        logged = {(m["step"], k) for m in run.metrics() for k in m if k not in ("step", TIMESTAMP)}
        assert n == len(logged)  # steps logged twice are stored once


@pytest.mark.slow
def test_bad_images_fail_naming_the_file_or_are_skipped_and_counted(store, tmp_path, capsys,
                                                                    random_tiny_clip):  # noqa: F811
    """Found only when read (in the child): ``fail`` stops the run and stores nothing; ``skip`` counts."""
    results, runs = store
    data = tmp_path / "data"
    data.mkdir()
    for i in range(6):
        Image.fromarray(np.full((12, 12, 3), 40 * i, np.uint8)).save(data / f"{i}.png")
    (data / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (data / "train.txt").write_text("0.png 0\n1.png 1\nbad.png 0\n2.png 0\n3.png 1\n")
    (data / "test.txt").write_text("4.png 0\n5.png 1\n")
    args = ["run", "--headless", "--dataset", "split-file", "--data-root", str(data), "--pretrained", random_tiny_clip,
            "--set", "train.iters=4", "train.batch_size=8", "train.eval_every=4", "train.warmup_iters=1",
            "train.threads=1", "data.train_list=train.txt", "data.test_list=test.txt"]

    assert cli.main(args) == 1
    assert "cannot decode image" in capsys.readouterr().out
    assert not results.exists()  # bad input: nothing stored, the run directory kept
    (failed,) = [RunDir(p) for p in runs.iterdir()]
    assert failed.status()["status"] == "failed" and failed.status()["user_error"]
    assert failed.status()["error"].startswith(f"cannot decode image {data}/bad.png (listed at {data}/train.txt:3)")

    (data / "train.txt").write_text((data / "train.txt").read_text() + "gone.png 1\n")
    spec = {**failed.spec(), "data.on_bad_image": "skip"}
    skipping = prepare(spec, runs)
    assert train_run(skipping)["skipped_images"] == 2  # bad.png and gone.png
    scheduler.ingest_quietly(results, skipping)
    with open_readonly(results) as con:
        assert con.execute("SELECT status, skipped_images FROM runs").fetchall() == [("finished", 2)]
