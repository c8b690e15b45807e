"""Reliability round 3 (issue 27): one schema at every boundary. Each test is a variant of a probe that
broke: a value the store cannot hold never trains, a file the store cannot trust is never stored,
a key given twice is refused, grids are bounded, nothing blocks, errors name their cause."""
from __future__ import annotations

import errno
import io
import json
import os
import threading
from pathlib import Path

import pytest
from rich.console import Console

from lvmbench import cli, config, paths
from lvmbench.errors import UserError
from lvmbench.exec import sweep
from lvmbench.exec.grid import Axes, check_size
from lvmbench.render import to_latex
from lvmbench.runs import fused, process
from lvmbench.runs.rundir import RunDir
from lvmbench.runs.segments import group_cost, total_cost
from lvmbench.store import open_readonly

from .conftest import TINY
from .test_hardening import one_line_error
from .test_store import fake_run

INT_KEYS = [k for k, p in config.SCHEMA.items() if p.type is int]


def stored_run_ids(results: Path) -> list[str]:
    if not results.exists():
        return []
    with open_readonly(results) as con:
        return [r[0] for r in con.execute("SELECT run_id FROM runs UNION ALL SELECT run_id FROM evals "
                                          "UNION ALL SELECT run_id FROM per_class").fetchall()]


# -- 1. an integer the store cannot hold never starts a run, whatever the key ---------------------------

@pytest.mark.parametrize("key", INT_KEYS)
def test_every_integer_setting_beyond_the_store_is_refused_before_anything_exists(store, capsys, key):
    results, runs = store
    code = cli.main(["run", "--headless", "--set", f"{key}={2 ** 63}"])
    one_line_error(capsys, code, contains=f"{key}={2 ** 63}: out of range for the results store")
    assert not runs.exists() and not results.exists()


def test_the_store_columns_of_settings_take_their_types_from_the_schema():
    from lvmbench.store.schema import SETTING_COLUMNS, TYPES

    assert {c: TYPES["runs"][c] for c in SETTING_COLUMNS} == {c: p.store_type for c, p in SETTING_COLUMNS.items()}
    assert TYPES["runs"]["iters"] == "BIGINT" and config.SCHEMA["train.iters"].store_type == "BIGINT"


def test_a_stored_spec_with_a_value_the_store_cannot_hold_is_refused_by_from(store, capsys):
    results, runs = store
    source = fake_run(runs, "ce")
    spec = json.loads(source.spec_file.read_text())
    source.spec_file.write_text(json.dumps({**spec, "train.batch_size": 10 ** 20}))
    code = cli.main(["run", "--headless", "--from", source.run_id])
    one_line_error(capsys, code, contains=f"train.batch_size={10 ** 20}: out of range for the results store")
    assert os.listdir(runs) == [source.run_id]


@pytest.mark.parametrize("key,value,shown", [("train.iters", "5", "'5'"), ("train.iters", True, "True"),
                                             ("train.iters", 2.5, "2.5"), ("train.lr", [1, 2], "[1, 2]"),
                                             ("head.kind", 3, "3"), ("train.nesterov", 1, "1")])
def test_a_stored_spec_with_a_value_of_the_wrong_type_is_refused_by_from(store, capsys, key, value, shown):
    results, runs = store
    source = fake_run(runs, "ce")
    source.spec_file.write_text(json.dumps({**json.loads(source.spec_file.read_text()), key: value}))
    code = cli.main(["run", "--headless", "--from", source.run_id])
    one_line_error(capsys, code, contains=f"{key}={shown}: expected ")
    assert os.listdir(runs) == [source.run_id]


# -- 2. a fused group's cost after a resume adds every segment -------------------------------------------

def test_a_resumed_groups_cost_is_the_sum_of_its_members_shares(tmp_path):
    run = RunDir.create(tmp_path, {"dataset": "mnist-lt", "method": "ce", "seed": 0})
    run.write_status(segment_starts=[100.0, 200.0])
    for ts, joules in ((100.0, 0.0), (124.0, 3.6e6)):  # the killed segment: 24 s, 1 kWh for the process
        run.append(run.system_file, {"ts": ts, "energy_j": joules, "gpu_index": 0, "power_w": None})
    wall, energy, shares = 90.0, 3.0, (30.0, 60.0)  # this segment: two members' shares of 90 s
    members = [total_cost(run, share, energy * share / wall, part=share / wall) for share in shares]
    group = group_cost(run, wall, energy)
    assert group == {"group_wall_s": 114.0, "group_energy_kwh": 4.0}
    assert sum(m["wall_s"] for m in members) == pytest.approx(group["group_wall_s"])
    assert sum(m["energy_kwh"] for m in members) == pytest.approx(group["group_energy_kwh"])


# -- 3. a key given twice is refused, naming both ------------------------------------------------------

def test_two_sweep_lists_for_one_key_are_refused(store, capsys):
    code = cli.main(["sweep", "--method", "ce", "--set", "train.lr=0.01,0.02", "--set", "train.lr=0.03", "--dry-run"])
    one_line_error(capsys, code, contains="train.lr is given twice (train.lr=0.01,0.02 and train.lr=0.03)")


def test_a_run_setting_given_twice_is_refused(store, capsys):
    results, runs = store
    code = cli.main(["run", "--headless", "--set", "train.iters=2", "--set", "train.iters=3"])
    one_line_error(capsys, code, contains="train.iters is given twice (train.iters=2 and train.iters=3)")
    assert not runs.exists()


def test_a_toml_key_flat_and_in_a_table_is_refused(store, tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text('"decoder.depth" = 2\n[decoder]\ndepth = 1\n')
    code = cli.main(["run", "--headless", "--config", str(path)])
    one_line_error(capsys, code, contains='decoder.depth is given twice ("decoder.depth" and depth in [decoder])')


@pytest.mark.parametrize("toml,message", [
    ("method = 5", "method=5: expected text"),
    ('dataset = ["mnist-lt"]', "dataset=['mnist-lt']: expected text"),
    ("backbone = 3", "backbone=3: expected text"),
    ("seed = 1.5", "seed=1.5: expected an integer"),
    ('method = ""', "method is empty"),
    ("seed = 99999999999", "seed=99999999999: must be between 0 and 4294967295"),
])
def test_toml_identity_values_are_type_checked(store, tmp_path, capsys, toml, message):
    path = tmp_path / "s.toml"
    path.write_text(toml + "\n")
    code = cli.main(["run", "--headless", "--config", str(path)])
    one_line_error(capsys, code, contains=f"{path}: {message}")


# -- 4. an empty run id never starts a fresh run --------------------------------------------------------

@pytest.mark.parametrize("flag", ["--resume", "--from", "--run-id"])
@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_run_id_is_refused(store, capsys, flag, empty):
    results, runs = store
    code = cli.main(["run", "--headless", flag, empty])
    one_line_error(capsys, code, contains=f"{flag} is empty")
    assert not runs.exists()


# -- 5. ingest validates before it stores ---------------------------------------------------------------

EVAL_DAMAGE = [
    ({"overall": "high"}, "eval/test.json: overall = 'high' is not a percentage"),
    ({"overall": float("nan")}, "eval/test.json: overall = nan is not a percentage"),
    ({"few": 100.5}, "eval/test.json: few = 100.5 is not a percentage"),
    ({"worst_class": -1}, "eval/test.json: worst_class = -1 is not a percentage"),
    ({"overall": None}, "eval/test.json has no overall"),
    ({"n_samples": 2.5}, "eval/test.json: n_samples = 2.5 is not a count"),
    ({"precision": True}, "eval/test.json: precision = True is not a percentage"),
]
SPEC_DAMAGE = [
    ({"dataset": None}, "spec.json has no 'dataset'"),
    ({"method": None}, "spec.json has no 'method'"),
    ({"seed": None}, "spec.json has no 'seed'"),
    ({"seed": "0"}, "spec.json: seed='0': expected an integer"),
    ({"seed": -1}, "spec.json: seed=-1: must be between 0 and 4294967295"),
    ({"backbone": 3}, "spec.json: backbone=3: expected text"),
    ({"train.batch_size": 2 ** 64}, f"spec.json: train.batch_size={2 ** 64}: out of range for the results store"),
    ({"train.batch_size": "big"}, "spec.json: train.batch_size='big': expected an integer"),
    ({"train.lr": float("inf")}, "spec.json: train.lr=inf: must be a finite number"),
    ({"train.momentum": 2}, "spec.json: train.momentum=2: must be in [0, 1]"),
]
PER_CLASS_DAMAGE = [
    ([{"class_id": 0, "accuracy": 99.0}, {"class_id": 0, "accuracy": 98.0}], "class 0 appears twice"),
    ([{"class_id": 0, "accuracy": 250.0}], "class 0: accuracy = 250.0 is not a percentage"),
    ([{"class_id": -3, "accuracy": 50.0}], "row 0: class_id = -3 is not a class index"),
    ([{"class_id": 0, "accuracy": 50.0, "n_test": 5000}], "its classes hold 5000 test samples, more than"),
    ([{"class_id": 0, "accuracy": 0.5}], "a class has accuracy 0.5, below the evaluation's worst class (1.0)"),
    ([7], "row 0 is not a JSON object"),
]


def _damage_and_ingest(store, capsys, file: str, change) -> tuple[RunDir, str]:
    results, runs = store
    good, bad = fake_run(runs, "ce"), fake_run(runs, "focal")
    path = bad.path / file
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    code = cli.main(["ingest"])
    err = capsys.readouterr().err
    assert code == 1 and stored_run_ids(results).count(good.run_id) == 3  # runs, evals, per_class
    assert bad.run_id not in stored_run_ids(results)  # never half-stored, never with NULLs
    return bad, err


@pytest.mark.parametrize("damage,reason", EVAL_DAMAGE)
def test_an_evaluation_number_out_of_its_range_skips_the_run(store, capsys, damage, reason):
    bad, err = _damage_and_ingest(store, capsys, "eval/test.json", lambda ev: {**ev, **damage})
    assert f"skipped {bad.path}: {reason}" in err


@pytest.mark.parametrize("damage,reason", SPEC_DAMAGE)
def test_a_spec_without_its_identity_or_with_a_wrong_value_skips_the_run(store, capsys, damage, reason):
    bad, err = _damage_and_ingest(store, capsys, "spec.json", lambda spec: {**spec, **damage})
    assert f"skipped {bad.path}: {reason}" in err


@pytest.mark.parametrize("damage,reason", [({"iters": "many"}, "runs.iters = 'many' is not an integer"),
                                           ({"wall_s": "slow"}, "runs.wall_s = 'slow' is not a number"),
                                           ({"trainable_params": 2 ** 70}, "runs.trainable_params = "
                                                                           f"{2 ** 70} is out of range for the store")])
def test_a_status_number_of_the_wrong_kind_skips_the_run(store, capsys, damage, reason):
    bad, err = _damage_and_ingest(store, capsys, "status.json", lambda status: {**status, **damage})
    assert f"skipped {bad.path}: {reason}" in err


@pytest.mark.parametrize("rows,reason", PER_CLASS_DAMAGE)
def test_per_class_rows_inconsistent_with_the_evaluation_skip_the_run(store, capsys, rows, reason):
    bad, err = _damage_and_ingest(store, capsys, "eval/per_class_test.json", lambda _: rows)
    assert f"skipped {bad.path}: eval/per_class_test.json: {reason}" in err


def test_a_stored_mean_never_counts_a_run_without_a_seed(store, capsys):
    results, runs = store
    for seed in (0, 1):
        fake_run(runs, "ce", seed=seed)
    nulled = fake_run(runs, "ce", seed=2)
    nulled.spec_file.write_text(json.dumps({**json.loads(nulled.spec_file.read_text()), "seed": None}))
    assert cli.main(["ingest"]) == 1
    capsys.readouterr()
    with open_readonly(results) as con:
        assert con.execute("SELECT count(*), count(seed) FROM runs").fetchone() == (2, 2)


# -- 6. bounded work -----------------------------------------------------------------------------------

def test_a_grid_larger_than_the_limit_is_refused_before_it_is_expanded(store, capsys):
    lists = [f"{k}={','.join(str(v) for v in range(1, 11))}" for k in INT_KEYS[:10]]
    code = cli.main(["sweep", "--method", "ce", "--set", *lists, "--dry-run"])
    one_line_error(capsys, code, contains="the grid holds 10,000,000,000 runs (10 x 10 x 10 x 10 x 10 x 10 x 10 x 10 "
                                          "x 10 x 10), more than --max-runs 10,000")


def test_max_runs_sets_the_limit(store, capsys):
    code = cli.main(["sweep", "--method", "ce,focal", "--seed", "0,1,2", "--max-runs", "5", "--dry-run"])
    one_line_error(capsys, code, contains="the grid holds 6 runs (2 x 3), more than --max-runs 5")
    assert cli.main(["sweep", "--method", "ce,focal", "--seed", "0,1,2", "--max-runs", "6", "--dry-run"]) == 0


def test_the_size_of_a_grid_is_arithmetic():
    axes = Axes(["mnist-lt"], ["tiny-clip"], ["ce", "focal"], [0, 1, 2],
                swept={f"k{i}": list(range(100)) for i in range(8)})
    with pytest.raises(UserError, match=r"holds 60,000,000,000,000,000 runs \(2 x 3 x 100 x 100 x 100"):
        check_size(axes)


def test_fused_groups_are_split_at_their_maximum_size(store, capsys):
    specs = [config.resolve("mnist-lt", "tiny-clip", "ce", overrides={"train.lr": 0.001 * (i + 1)})
             for i in range(fused.MAX_MEMBERS + 4)]
    groups = fused.partition(specs)
    assert [len(g) for g in groups] == [fused.MAX_MEMBERS, 4] and sorted(sum(groups, [])) == list(range(len(specs)))
    lrs = ",".join(str(0.001 * (i + 1)) for i in range(fused.MAX_MEMBERS + 4))
    assert cli.main(["sweep", "--method", "ce", "--set", f"train.lr={lrs}", "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"2 fused group(s) of at most {fused.MAX_MEMBERS} runs" in out and "g1: 16 runs, g2: 4 runs" in out


# -- 7. nothing blocks -----------------------------------------------------------------------------------

def finishes(call, timeout_s: float = 60.0):
    """Run ``call`` in a thread; whether it returned (a hang guard, not a speed test)."""
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", call()), daemon=True)
    thread.start()
    thread.join(timeout_s)
    return not thread.is_alive(), result.get("value")


@pytest.mark.parametrize("name", ["spec.json", "status.json", "eval/test.json", "metrics.jsonl"])
def test_a_fifo_in_a_run_folder_is_skipped_never_waited_on(store, capsys, name):
    results, runs = store
    good, fifo = fake_run(runs, "ce"), fake_run(runs, "focal")
    (fifo.path / name).unlink()
    os.mkfifo(fifo.path / name)
    done, code = finishes(lambda: cli.main(["ingest"]))
    assert done, f"ingest blocked on a FIFO {name}"
    err = capsys.readouterr().err
    assert code == 1 and f"skipped {fifo.path}: cannot read {fifo.path / name}: not a regular file (a FIFO)" in err
    assert fifo.run_id not in stored_run_ids(results) and good.run_id in stored_run_ids(results)
    out = Console(file=io.StringIO(), width=200)
    done, outcome = finishes(lambda: sweep.run_sweep(sweep.build_axes(None, methods=["ce", "focal"]), runs, results,
                                                     dry=True, out=out))
    assert done and outcome.ok, f"sweep --dry-run blocked on a FIFO {name}"
    assert "2 runs" in out.file.getvalue()


def test_an_unreachable_mlflow_server_is_named_at_once(store, capsys):
    pytest.importorskip("mlflow")
    results, runs = store
    fake_run(runs, "ce")
    assert cli.main(["ingest"]) == 0
    capsys.readouterr()
    code = cli.main(["export", "mlflow", "--tracking-uri", "http://127.0.0.1:9"])
    one_line_error(capsys, code, contains="mlflow: cannot reach the tracking server http://127.0.0.1:9 within 10 s")


# -- 8. one line, never a traceback, for paths that cannot be used ---------------------------------------

def _export_targets(tmp_path: Path) -> list[tuple[str, str]]:
    (tmp_path / "a-file").write_text("x")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    targets = [(str(tmp_path / "a-file" / "x"), "a-file is a file, not a folder"),
               (str(tmp_path / "dangling"), "dangling is a symlink to nothing"),
               (str(tmp_path / "loop" / "x"), "loop is a symlink loop"),
               ("/dev/full/x", "/dev/full is a file, not a folder")]
    if Path("/sys/kernel").is_dir():
        targets.append(("/sys/kernel/lvmbench-x", "cannot create files in /sys/kernel"))
    return targets


def test_export_to_a_place_that_cannot_hold_it_is_one_line(store, tmp_path, capsys):
    results, runs = store
    fake_run(runs, "ce")
    assert cli.main(["ingest"]) == 0
    capsys.readouterr()
    for target, message in _export_targets(tmp_path):
        code = cli.main(["export", target])
        one_line_error(capsys, code, contains=message)


@pytest.fixture
def odd_runs_dirs(tmp_path):
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    (tmp_path / "file").write_text("x")
    dirs = [(tmp_path / "loop", "is a symlink loop"), (tmp_path / "file", "is a file, not a folder")]
    if Path("/proc/self/fd").is_dir():
        dirs.append((Path("/proc/self/fd"), "cannot create files in /proc/self/fd"))
    if Path("/sys/kernel").is_dir():
        dirs.append((Path("/sys/kernel"), "cannot create files in /sys/kernel"))
    return dirs


def test_a_runs_dir_that_cannot_hold_runs_is_one_line(store, capsys, odd_runs_dirs):
    for runs_dir, message in odd_runs_dirs:
        code = cli.main(["run", "--headless", "--set", *TINY, "--runs-dir", str(runs_dir)])
        err = one_line_error(capsys, code, contains=f"--runs-dir {runs_dir}")
        assert message in err


def test_ingest_of_a_runs_dir_that_is_not_a_folder_is_one_line(store, capsys, odd_runs_dirs):
    for runs_dir, message in odd_runs_dirs[:2]:
        code = cli.main(["ingest", "--runs-dir", str(runs_dir)])
        one_line_error(capsys, code, contains=f"--runs-dir {runs_dir} {message}")


# -- 9. errors that name the cause -------------------------------------------------------------------------

def test_a_full_disk_during_a_checkpoint_names_the_device(tmp_path, monkeypatch):
    import torch

    from lvmbench.train import checkpoint

    def short_write(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4416 vs 4308")

    monkeypatch.setattr(torch, "save", short_write)
    with pytest.raises(OSError) as err:
        checkpoint.atomic_save({"x": 1}, tmp_path / "ckpt" / "last.pt")
    assert err.value.errno == errno.ENOSPC
    assert err.value.strerror == f"no space left on {paths.device_of(tmp_path)} while writing {tmp_path}/ckpt/last.pt"
    assert os.listdir(tmp_path / "ckpt") == []  # no temporary file left behind


def test_the_training_child_reports_a_full_disk_in_one_line(tmp_path, capsys):
    from lvmbench.train.__main__ import failure_fields

    run = RunDir.create(tmp_path, {"dataset": "mnist-lt", "method": "ce", "seed": 0})
    cache_file = tmp_path / "cache" / "shard-0.bin"
    fields = failure_fields(run, OSError(errno.ENOSPC, "No space left on device", str(cache_file)))
    assert fields["error"] == paths.no_space(cache_file) and "Traceback" not in capsys.readouterr().err


def test_an_export_to_a_full_disk_blames_the_export_not_the_database(store, tmp_path, capsys, monkeypatch):
    results, runs = store
    fake_run(runs, "ce")
    assert cli.main(["ingest"]) == 0
    capsys.readouterr()
    mkdir = Path.mkdir

    def full(self, *args, **kwargs):
        if self.name == "snapshot":
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", full)
    code = cli.main(["export", str(tmp_path / "snapshot")])
    one_line_error(capsys, code, contains=f"export {tmp_path / 'snapshot'}: no space left on ")


def test_a_spec_that_is_a_symlink_to_itself_is_named_as_skipped(store, capsys):
    results, runs = store
    good, looped = fake_run(runs, "ce"), fake_run(runs, "focal")
    looped.spec_file.unlink()
    os.symlink(looped.spec_file, looped.spec_file)
    assert cli.main(["ingest"]) == 1
    err = capsys.readouterr().err
    assert f"skipped {looped.path}: cannot read {looped.spec_file}: Too many levels of symbolic links" in err


@pytest.mark.parametrize("args,message", [
    (["--seed", ","], "--seed ',': names nothing"),
    (["--method", " , "], "--method ' , ': names nothing"),
    (["--gpus", "x"], "--gpus x: 'x' is not a GPU index or UUID"),
    (["--gpus", "0,0"], "--gpus 0,0: a GPU is named twice"),
    (["--max-runs", "0"], "--max-runs 0: must be >= 1"),
])
def test_sweep_lists_that_name_nothing_or_no_gpu_are_refused(store, capsys, args, message):
    method = [] if "--method" in args else ["--method", "ce"]
    code = cli.main(["sweep", *method, *args, "--dry-run"])
    one_line_error(capsys, code, contains=message)


def test_a_second_resumer_names_the_live_owner_not_the_dead_child(tmp_path):
    import subprocess
    import sys

    run = RunDir.create(tmp_path, {"dataset": "mnist-lt", "method": "ce", "seed": 0})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run.write_status(status="running", pid=int(dead.stdout))  # the killed child's pid, left in status.json
    owner = process.own(run)  # the first resumer
    try:
        with pytest.raises(UserError, match=rf"run {run.run_id} is still running \(pid {os.getpid()}\)"):
            process.own(run)
    finally:
        owner.release()


def test_a_statement_led_by_comments_is_refused_by_its_first_keyword(store, capsys):
    results, runs = store
    fake_run(runs, "ce")
    assert cli.main(["ingest"]) == 0
    capsys.readouterr()
    for sql, word in [("-- note\nINSERT INTO runs SELECT * FROM runs", "INSERT"),
                      ("/* a */ /* b */\n  LOAD httpfs", "LOAD"), ("--x\n--y\nSET threads = 1", "SET")]:
        code = cli.main(["sql", sql])
        one_line_error(capsys, code, contains=f"refused {word}:")


# -- 10. LaTeX that pdflatex takes -----------------------------------------------------------------------

def test_latex_tables_write_greek_letters_in_math_mode():
    text = to_latex(["Method", "Δ overall", "Δ few"], [["ce", 1.5, -2.0]], "τ-normalised", notes=["Δ = ref - paper"])
    assert r"$\Delta$ overall" in text and r"$\tau$-normalised" in text and r"$\Delta$ = ref - paper" in text
    assert text.isascii()
