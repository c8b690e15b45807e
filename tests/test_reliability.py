"""Reliability, fast: checkpoints, exact augmentation streams, crash and kill records, orphans, bad input."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from lvmbench import cli, config
from lvmbench.data import build_dataset
from lvmbench.data.base import Split
from lvmbench.errors import UserError
from lvmbench.runs import process, scheduler
from lvmbench.runs.plan import prepare
from lvmbench.store import open_readonly, open_writer
from lvmbench.store.ingest import ingest_dir
from lvmbench.train import checkpoint
from lvmbench.train.__main__ import main as child_main
from lvmbench.train.batches import ImageDataset, StepBatchSampler, collate

from .conftest import TINY


def make_run(runs, method="ce", **extra):
    spec = config.resolve("mnist-lt", "tiny-clip", method, overrides={**config.parse_sets(TINY), **extra})
    return prepare(spec, runs)


# -- checkpoints ----------------------------------------------------------------------------------

def tiny_training(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3))
    model[0].requires_grad_(False)  # a frozen part: not saved
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    return model, opt, sched


def train_steps(model, opt, sched, n):
    for _ in range(n):
        x = torch.randn(16, 4)  # draws from the global RNG: restored by the checkpoint
        loss = model(x).logsumexp(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def test_checkpoint_continues_exactly(tmp_path):
    model, opt, sched = tiny_training()
    train_steps(model, opt, sched, 3)
    best = {"val_overall": 12.5, "step": 2, "state": checkpoint.model_state(model)}
    checkpoint.save(tmp_path / "last.pt", step=3, model=model, optimizer=opt, scheduler=sched, loss=None,
                    best=best, train_s=4.0)
    train_steps(model, opt, sched, 2)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    model2, opt2, sched2 = tiny_training(seed=1)  # different init: everything that trains must come back
    model2[0].load_state_dict(model[0].state_dict())  # the frozen part is rebuilt from the spec
    torch.manual_seed(123)  # and the global RNG disturbed
    got = checkpoint.load(tmp_path / "last.pt", model=model2, optimizer=opt2, scheduler=sched2, loss=None)
    assert got["step"] == 3 and got["train_s"] == 4.0 and got["best"]["val_overall"] == 12.5
    assert sched2.last_epoch == 3
    train_steps(model2, opt2, sched2, 2)
    for k, v in model2.state_dict().items():
        assert torch.equal(v, expected[k]), k
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]  # no temporary file left behind


def test_model_state_holds_what_trains_and_buffers():
    model, _, _ = tiny_training()
    assert set(checkpoint.model_state(model)) == {
        "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked", "2.weight", "2.bias"}


def test_missing_checkpoint_is_a_fresh_start_and_a_foreign_one_is_refused(tmp_path):
    model, opt, sched = tiny_training()
    kwargs = dict(model=model, optimizer=opt, scheduler=sched, loss=None)
    assert checkpoint.load(tmp_path / "none.pt", **kwargs) is None
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(UserError, match=r"cannot read checkpoint .*text.pt"):
        checkpoint.load(tmp_path / "text.pt", **kwargs)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(UserError, match=r"other.pt is not an lvmbench training checkpoint"):
        checkpoint.load(tmp_path / "other.pt", **kwargs)


# -- the batch stream and augmentation are functions of (seed, step) --------------------------------

def test_seeded_batches_do_not_depend_on_where_the_stream_starts():
    labels = np.repeat(np.arange(4), 10)
    whole = list(StepBatchSampler(labels, 8, "instance", seed=3, steps=12))
    tail = list(StepBatchSampler(labels, 8, "instance", seed=3, steps=12, start_step=7))
    assert tail == whole[7:]
    seeds = [s for batch in whole for _, s in batch]
    assert len(set(seeds)) == len(seeds)  # every view draws its own augmentation
    other = list(StepBatchSampler(labels, 8, "instance", seed=4, steps=12))
    assert [s for _, s in other[0]] != [s for _, s in whole[0]]


def test_augmentation_depends_only_on_the_item_seed():
    images = np.random.default_rng(0).integers(0, 255, (2, 28, 28), dtype=np.uint8)
    ds = ImageDataset(Split(images, np.array([0, 1])), T.Compose([T.RandomResizedCrop(28), T.ToTensor()]))
    torch.manual_seed(0)
    a = ds[(1, 42)][0]
    torch.rand(1000)  # whatever else used the global RNG in between
    state = torch.get_rng_state()
    assert torch.equal(ds[(1, 42)][0], a)
    assert torch.equal(torch.get_rng_state(), state)  # and the global RNG is left alone
    assert not torch.equal(ds[(1, 43)][0], a)


def test_skipped_images_are_reported_and_left_out_of_the_batch(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    split = Split(["ok.png", "bad.png", "gone.png"], np.array([0, 1, 1]), root=tmp_path,
                  where=["t.txt:1", "t.txt:2", "t.txt:3"])
    seen = []
    ds = ImageDataset(split, T.ToTensor(), on_bad=seen.append)
    images, labels, index = collate([ds[0], ds[1], ds[2]])
    assert images.shape[0] == 1 and index.tolist() == [0]
    assert [r["image"] for r in seen] == [str(tmp_path / "bad.png"), str(tmp_path / "gone.png")]
    assert "cannot decode image" in seen[0]["error"] and "t.txt:2" in seen[0]["error"]
    with pytest.raises(UserError, match=r"cannot decode image .*bad.png \(listed at t.txt:2\)"):
        ImageDataset(split, T.ToTensor())[1]
    with pytest.raises(UserError, match="no image of a batch could be read"):
        collate([None, None])


def _split_files(root, train, test):
    (root / "train.txt").write_text("".join(f"{name} {label}\n" for name, label in train))
    (root / "test.txt").write_text("".join(f"{name} {label}\n" for name, label in test))
    for name, _ in train + test:
        if not name.startswith("gone"):
            Image.fromarray(np.full((8, 8, 3), 99, np.uint8)).save(root / name)


def _split_spec(root, on_bad="fail"):
    return config.resolve("split-file", "tiny-clip", "ce", data_root=str(root), overrides={
        "data.train_list": "train.txt", "data.test_list": "test.txt", "data.on_bad_image": on_bad})


def test_missing_listed_images_fail_or_are_skipped(tmp_path):
    _split_files(tmp_path, [("a.png", 0), ("gone1.png", 1), ("b.png", 1), ("gone2.png", 0)], [("a.png", 0)])
    with pytest.raises(UserError, match=r"image file missing: .*gone1.png \(listed at .*train.txt:2\); "
                                        r"2 of 4 train images are missing \(--set data.on_bad_image=skip"):
        build_dataset(_split_spec(tmp_path))
    ds = build_dataset(_split_spec(tmp_path, "skip"))
    assert list(ds.train.samples) == ["a.png", "b.png"] and ds.train.labels.tolist() == [0, 1]
    assert ds.train.where[1].endswith("train.txt:3")
    assert [r["image"] for r in ds.skipped] == [str(tmp_path / "gone1.png"), str(tmp_path / "gone2.png")]


# -- crashes: NaN, out of memory --------------------------------------------------------------------

def test_nan_loss_fails_the_run_with_a_reason(tmp_path, random_tiny_clip):  # noqa: F811
    spec = config.resolve("mnist-lt", "tiny-clip", "ce", pretrained=random_tiny_clip,
                          overrides={**config.parse_sets(TINY), "train.lr": 1e30})
    run = prepare(spec, tmp_path)
    assert child_main([str(run.path)]) == 1
    status = run.status()
    assert status["status"] == "failed" and not status["user_error"]
    assert status["error"].startswith("NonFiniteLoss: loss became nan at step ")
    assert "lower train.lr (now 1e+30)" in status["error"]
    assert not run.evaluation("test")  # no garbage result


@pytest.mark.parametrize("method,exc,expected", [
    ("ce", torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
     "out of GPU memory: lower train.batch_size (now 16), set cache.mode=off, or use a smaller backbone"),
    ("full_finetune", MemoryError(),
     "out of host memory: lower train.batch_size (now 16), set finetune.grad_checkpointing=true, "
     "or use a smaller backbone"),
])
def test_out_of_memory_names_the_settings_to_lower(tmp_path, monkeypatch, method, exc, expected):
    assert_child_error(tmp_path, monkeypatch, method, exc, expected)


def test_a_worker_error_keeps_its_own_message(tmp_path, monkeypatch):
    from lvmbench.data.base import BadImage

    wrapped = BadImage("Caught BadImage in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
                       "  File \"x.py\", line 1, in f\nlvmbench.data.base.BadImage: cannot decode image /d/x.png "
                       "(listed at /d/t.txt:2): broken data stream")
    assert_child_error(tmp_path, monkeypatch, "ce", wrapped,
                       "cannot decode image /d/x.png (listed at /d/t.txt:2): broken data stream")


def assert_child_error(tmp_path, monkeypatch, method, exc, expected):
    from lvmbench.train import loop

    def failing_run(*args):
        print("training…", flush=True)
        raise exc

    monkeypatch.setattr(loop, "train_run", failing_run)
    run = make_run(tmp_path, method)
    assert child_main([str(run.path)]) == 1
    assert run.status()["status"] == "failed" and run.status()["error"] == expected


# -- kills: the parent records them; ingest recovers runs whose parent died ------------------------

def test_killed_child_is_recorded_with_its_log(tmp_path):
    run = make_run(tmp_path)
    run.log_file.write_text("".join(f"line {i}\n" for i in range(80)))
    status = scheduler.finalize(run, -9)
    assert status["status"] == "killed" and status["error"] == "killed by SIGKILL"
    assert status["log_tail"].splitlines() == [f"line {i}" for i in range(30, 80)]


def test_ingest_marks_orphans_killed_and_leaves_live_runs(store, capsys):
    results, runs = store
    dead, live = make_run(runs), make_run(runs)
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead.write_status(status="running", pid=gone.pid, host=os.uname().nodename)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", live.run_id])
    try:
        live.write_status(status="running", pid=holder.pid, host=os.uname().nodename)
        assert cli.main(["ingest"]) == 0
        assert live.status()["status"] == "running"
    finally:
        holder.kill()
        holder.wait()
    status = dead.status()
    assert status["status"] == "killed"
    assert status["error"].startswith(f"training process {gone.pid} is gone")
    assert status["error"].endswith(f"lvmbench run --headless --resume {dead.run_id} --runs-dir {runs}")
    with open_readonly(results) as con:
        assert dict(con.execute("SELECT run_id, status FROM runs").fetchall()) == {
            dead.run_id: "killed", live.run_id: "running"}


# -- resume: what it refuses ------------------------------------------------------------------------

def test_resume_refuses_what_cannot_continue(store, capsys):
    results, runs = store
    done = make_run(runs)
    done.write_status(status="finished")
    cases = [
        (["--resume", done.run_id[:-1] + "x"], f"error: no run {done.run_id[:-1]}x in {runs} (did you mean {done.run_id}?)"),
        (["--resume", done.run_id], f"error: run {done.run_id} already finished; nothing to resume"),
        (["--resume", done.run_id, "--set", "train.lr=1"], "error: --resume continues a run with the settings"),
    ]
    for args, message in cases:
        assert cli.main(["run", "--headless", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith(message) and len(err.strip().splitlines()) == 1, err
    assert not results.exists()


def test_resume_reopens_a_failed_run(tmp_path):
    run = make_run(tmp_path)
    run.write_status(status="failed", error="boom", user_error=True, log_tail="x", ended_at=1.0)
    resumed, owner = scheduler.resumable(tmp_path, run.run_id)
    owner.release()
    status = resumed.reopen()
    assert status["status"] == "queued" and status["resumes"] == 1
    assert status["error"] is None and status["user_error"] is None and status["ended_at"] is None


# -- the store: nothing lost, nothing duplicated ----------------------------------------------------

def test_ingest_keeps_the_latest_record_of_a_resumed_step(tmp_path):
    run = make_run(tmp_path / "runs")
    for step, loss in [(1, 2.0), (2, 1.5), (3, 9.9), (2, 1.5), (3, 1.2)]:  # killed after 3, resumed from 1
        run.append(run.metrics_file, {"step": step, "loss": loss, "ts": 1_700_000_000 + step})
    with open_writer(tmp_path / "r.duckdb") as con:
        ingest_dir(con, run.path)
        rows = con.execute("SELECT step, value FROM metrics WHERE key = 'loss' ORDER BY step").fetchall()
    assert rows == [(1, 2.0), (2, 1.5), (3, 1.2)]


def test_runs_that_failed_on_bad_input_are_not_stored(tmp_path):
    bad, good = make_run(tmp_path / "runs"), make_run(tmp_path / "runs")
    bad.write_status(status="failed", user_error=True, error="cannot decode image x.png")
    good.write_status(status="failed", error="NonFiniteLoss: loss became nan")
    with open_writer(tmp_path / "r.duckdb") as con:
        report = ingest_dir(con, tmp_path / "runs")
    assert report.stored == [good.run_id] and report.left_out == [bad.run_id]


def test_an_older_database_gains_new_columns(tmp_path):
    import duckdb

    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, status VARCHAR)")
    con.execute("INSERT INTO runs VALUES ('old-run', 'finished')")
    con.close()
    run = make_run(tmp_path / "runs")
    run.write_status(status="finished", skipped_images=3)
    with pytest.raises(duckdb.Error):  # what an older schema would do with a newer run
        duckdb.connect(str(db)).execute("SELECT skipped_images FROM runs")
    with open_writer(db) as con:
        ingest_dir(con, run.path)
        assert con.execute("SELECT run_id, skipped_images FROM runs ORDER BY run_id").fetchall() == [
            (run.run_id, 3), ("old-run", None)]


def test_locked_database_costs_no_run_and_names_the_holder(store, monkeypatch, capsys):
    from lvmbench.store import db as store_db

    results, runs = store
    run = make_run(runs)
    run.write_status(status="finished")
    with open_writer(results):
        pass
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]);"
                               "print('ready', flush=True); time.sleep(60)", str(results)],
                              stdout=subprocess.PIPE, text=True)
    monkeypatch.setattr(store_db, "LOCK_RETRY_S", 0.3)
    try:
        assert holder.stdout.readline().strip() == "ready"
        assert cli.main(["ingest"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {results} is locked by process {holder.pid} ") and len(err.splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()
    assert run.exists()  # the run is still there, and ingest can be repeated
    assert cli.main(["ingest"]) == 0
    with open_readonly(results) as con:
        assert con.execute("SELECT run_id FROM runs").fetchall() == [(run.run_id,)]


# -- bad input: one line, exit code 2, nothing created or stored -----------------------------------

def _bad_inputs(root):
    """(arguments, expected start of the message) for each bad input; files under ``root``."""
    split = ["--dataset", "split-file", "--data-root", str(root)]
    return [
        (split + ["--set", "data.train_list=nope.txt", "data.test_list=test.txt"],
         f"error: split file not found: {root}/nope.txt"),
        (split + ["--set", "data.train_list=broken.txt", "data.test_list=test.txt"],
         f"error: {root}/broken.txt:2: expected 'relative/path label', got 'b.png'"),
        (split + ["--set", "data.train_list=label.txt", "data.test_list=test.txt", "data.classnames=names.txt"],
         f"error: {root}/label.txt:2: label 7 outside 0..1 (classes from {root}/names.txt: 2 names)"),
        (split + ["--set", "data.train_list=missing.txt", "data.test_list=test.txt"],
         f"error: image file missing: {root}/gone.png (listed at {root}/missing.txt:2)"),
        (["--dataset", "places-lt", "--data-root", str(root / "places"), "--set", "data.classnames=names.txt"],
         f"error: places-lt: 2 class names for 365 classes (classes from {root}/places/names.txt: 2 names)"),
        (["--dataset", "places-lt", "--data-root", str(root)], f"error: split file not found: {root}/Places_LT_train.txt"),
        (["--dataset", "folder", "--data-root", str(root / "nothere")], f"error: data root not found: {root}/nothere"),
        (["--method", "balanced_sofmax"], "error: unknown method 'balanced_sofmax' (did you mean balanced_softmax?)"),
        (["--set", "train.lr=-0.1"], "error: train.lr=-0.1: must be > 0"),
        (["--set", "train.batch_size=0"], "error: train.batch_size=0: must be > 0"),
        (["--set", "train.iters=ten"], "error: --set train.iters=ten: expected int"),
        (["--set", "data.on_bad_image=ignore"], "error: data.on_bad_image=ignore: choose from fail, skip"),
        (["--backbone", "ViT-B-32", "--pretrained", "opnai"],
         "error: unknown pretrained tag for ViT-B-32 'opnai' (did you mean openai"),
        (["--backbone", "ViT-B-32", "--pretrained", "openai"],
         "error: pretrained weights 'openai' for ViT-B-32 are not in the local cache and cannot be downloaded"),
        (["--pretrained", str(root / "notes.pt")], f"error: {root}/notes.pt is not a checkpoint"),
        (["--results", str(root / "notes.pt")], f"error: {root}/notes.pt is not a DuckDB database; refusing"),
        (["--results", str(root)], f"error: {root} is a folder, not a DuckDB database"),
    ]


def empty_hub_cache(monkeypatch, tmp_path):
    """No weights are cached (the library reads its cache folder once, when imported)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


def test_bad_input_is_one_line_and_stores_nothing(store, tmp_path, capsys, monkeypatch):
    results, runs = store
    empty_hub_cache(monkeypatch, tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    _split_files(data, [("a.png", 0), ("b.png", 1)], [("a.png", 0)])
    (data / "broken.txt").write_text("a.png 0\nb.png\n")
    (data / "label.txt").write_text("a.png 0\nb.png 7\n")
    (data / "missing.txt").write_text("a.png 0\ngone.png 1\n")
    (data / "names.txt").write_text("cat\ndog\n")
    (data / "places").mkdir()
    _split_files(data / "places", [("a.png", 0)], [("a.png", 0)])
    for part in ("train", "val", "test"):
        (data / "places" / f"Places_LT_{part}.txt").write_text("a.png 0\n")
    (data / "places" / "names.txt").write_text("cat\ndog\n")
    (data / "notes.pt").write_text("my notes\n")
    for args, message in _bad_inputs(data):
        assert cli.main(["run", "--headless", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith(message), (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert not results.exists() and not runs.exists()
    assert (data / "notes.pt").read_text() == "my notes\n"


def test_an_unreachable_hub_is_set_offline_even_after_import(monkeypatch, tmp_path):
    from huggingface_hub import constants

    from lvmbench.models import backbone

    empty_hub_cache(monkeypatch, tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # as read when the library was imported
    monkeypatch.setattr(backbone, "_hub_reachable", lambda *a, **k: False)
    with pytest.raises(UserError, match=r"'openai' for ViT-B-32 are not in the local cache and cannot be "
                                        r"downloaded \(no network: the hub is offline\)"):
        backbone.ensure_weights("ViT-B-32", "openai")
    assert constants.HF_HUB_OFFLINE and os.environ["HF_HUB_OFFLINE"] == "1"
