"""Sweeps: grid expansion and presets, shared stage-1 runs, skipping finished runs, local slots,
and an end-to-end local sweep (a failed run does not stop it; a re-run starts nothing)."""
import json
import subprocess
import sys

from pathlib import Path

import pytest

from lvmbench import config
from lvmbench.errors import UserError
from lvmbench.exec.grid import Axes, expand
from lvmbench.exec.local import LocalExecutor, local_slots
from lvmbench.runs.scheduler import Reporter, Scheduler
from lvmbench.exec.presets import PAPER_METHODS, PRESETS
from lvmbench.runs.plan import BLOCKED, PENDING, SKIPPED, plan, prepare, ready
from lvmbench.sweep import build_axes, parse_data_roots, parse_seeds

from .conftest import TINY


def lvmbench(*args):
    return subprocess.run([sys.executable, "-m", "lvmbench", *args], capture_output=True, text=True, timeout=600)


def grid(methods, seeds=(0,), sets=None):
    return expand(Axes(["mnist-lt"], ["tiny-clip"], list(methods), list(seeds), sets=sets or {}))


def test_expand_is_the_cross_product():
    specs = expand(Axes(["mnist-lt"], ["tiny-clip"], ["ce", "lade"], [0, 1, 2], pretrained=["embedded", "x.pt"]))
    assert len(specs) == 2 * 2 * 3
    x = str(Path("x.pt").resolve())  # a checkpoint path enters the spec absolute
    assert {(s["pretrained"], s["method"], s["seed"]) for s in specs} == {
        (p, m, s) for p in ("embedded", x) for m in ("ce", "lade") for s in (0, 1, 2)}


def test_two_stage_runs_share_the_grids_own_ce_run_per_seed(tmp_path):
    # A setting that only some methods read must not split the stage-1 run off the grid's ce run.
    jobs = plan(grid(["crt", "ce", "lws", "marc", "disalign"], seeds=(0, 1), sets={"coop.n_ctx": 4}), tmp_path)
    assert len(jobs) == 10 and not any(j.implicit for j in jobs)
    by_hash = {j.hash: j for j in jobs}
    for job in jobs:
        if job.spec["method"] == "ce":
            assert job.needs is None
        else:
            parent = by_hash[job.needs]
            assert (parent.spec["method"], parent.spec["seed"]) == ("ce", job.spec["seed"])
    # Every stage-1 job comes before the jobs that wait for it.
    order = [j.hash for j in jobs]
    assert all(order.index(j.needs) < order.index(j.hash) for j in jobs if j.needs)


def test_a_missing_stage1_run_is_added_once_per_seed(tmp_path):
    jobs = plan(grid(["crt", "lws"], seeds=(0, 1)), tmp_path)
    implicit = [j for j in jobs if j.implicit]
    assert sorted(j.spec["seed"] for j in implicit) == [0, 1]
    assert all(j.spec["method"] == "ce" for j in implicit)
    assert jobs[:2] == implicit


def test_duplicates_merge_and_finished_runs_are_skipped(tmp_path):
    specs = grid(["ce", "lade"])
    done = prepare(specs[0], tmp_path)
    done.write_status(status="finished")
    failed = prepare(specs[1], tmp_path)
    failed.write_status(status="failed")
    jobs = plan(specs + specs, tmp_path)
    assert [(j.spec["method"], j.state) for j in jobs] == [("ce", SKIPPED), ("lade", PENDING)]
    assert jobs[0].run.run_id == done.run_id


def test_a_failed_stage1_run_blocks_its_dependents(tmp_path):
    jobs = plan(grid(["ce", "crt"]), tmp_path)
    by_hash = {j.hash: j for j in jobs}
    ce, crt = jobs
    assert ready(ce, by_hash) is True and ready(crt, by_hash) is False
    ce.state = "running"
    assert ready(crt, by_hash) is False
    ce.state = "failed"
    assert ready(crt, by_hash) is None
    ce.state = BLOCKED
    assert ready(crt, by_hash) is None
    ce.state = "finished"
    assert ready(crt, by_hash) is True


def test_presets_cover_the_papers_tables():
    methods = __import__("lvmbench.catalog", fromlist=["x"]).METHODS
    assert set(PAPER_METHODS) == {name for name, m in methods.items() if m.kind != "peft"}
    lift = PRESETS["paper-lift"]
    assert set(lift.methods) == {"zeroshot"} | {name for name, m in methods.items() if m.kind == "peft"}
    assert lift.backbones == ("ViT-B-16",) and lift.sets == {}  # tte per method: tests/test_lift_fidelity.py
    assert PRESETS["paper-table1"].datasets == ("imagenet-lt",) and PRESETS["paper-table1"].backbones == ("ViT-L-14",)
    assert PRESETS["paper-table2"].datasets == ("inat18",)  # the study's Table 2 is iNaturalist 2018
    assert PRESETS["paper-table3"].datasets == ("places-lt",)
    assert PRESETS["paper-backbones"].backbones == ("ViT-B-16", "ViT-L-14")
    assert PRESETS["paper-laion"].pretrained == ("openai", "laion2b_s32b_b82k")
    assert PRESETS["paper-resnet"].backbones == ("RN101",)
    embedded = PRESETS["embedded"]
    assert len(embedded.methods) >= 6 and {"ce", "disalign"} <= set(embedded.methods)


def test_command_line_axes_replace_the_presets():
    axes = build_axes("paper-laion", methods=["ce", "crt"], seeds=[0, 1], sets={"train.iters": 5})
    assert axes.datasets == ["inat18", "places-lt"] and axes.pretrained == ["openai", "laion2b_s32b_b82k"]
    assert axes.methods == ["ce", "crt"] and axes.seeds == [0, 1] and axes.sets == {"train.iters": 5}
    assert build_axes(None, methods=["ce"]).datasets == ["mnist-lt"]


@pytest.mark.parametrize("call,message", [
    (lambda: build_axes("paper-tabel1"), "unknown preset 'paper-tabel1' (did you mean paper-table1"),
    (lambda: build_axes(None), "give --preset NAME or at least --method"),
    (lambda: parse_seeds("0,x"), "--seed 0,x: expected integers, e.g. 0,1,2"),
    (lambda: local_slots([], max_parallel=0), "--max-parallel 0: must be >= 1"),
    (lambda: local_slots(["0", "1"], nproc=3), "--nproc 3 needs 3 GPUs per run; 2 available (0,1)"),
    (lambda: config.check_nproc({"train.batch_size": 30}, 4),
     "--nproc 4: train.batch_size=30 must be a multiple of it"),
])
def test_sweep_user_errors(call, message):
    with pytest.raises(UserError) as err:
        call()
    assert str(err.value).startswith(message)


def test_data_roots_for_all_or_one_dataset(tmp_path):
    roots = parse_data_roots([str(tmp_path), f"places-lt={tmp_path}/p"])
    assert roots == {"*": str(tmp_path), "places-lt": f"{tmp_path}/p"}
    specs = expand(Axes(["imagenet-lt", "places-lt"], ["ViT-B-16"], ["ce"], [0], data_roots=roots))
    assert [s["data_root"] for s in specs] == [str(tmp_path), f"{tmp_path}/p"]


def test_local_slots_one_per_gpu_group_or_cpu_shares():
    slots = local_slots(["0", "1", "2", "3"], nproc=2)
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0,1", "2,3"]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in local_slots(["0", "1", "2"], max_parallel=2)] == ["0", "1"]
    cpu = local_slots([], max_parallel=2, cpus=8)
    assert len(cpu) == 2 and all(s.threads == 4 and s.env["OMP_NUM_THREADS"] == "4" for s in cpu)
    assert local_slots([], cpus=2)[0].threads == 2
    assert local_slots([], max_parallel=4, cpus=2)[0].threads == 1


def test_dry_run_lists_a_paper_preset_without_data(store):
    results, runs = store
    out = lvmbench("sweep", "--preset", "paper-table1", "--seed", "0,1", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert f"{2 * len(PAPER_METHODS)} runs: {2 * len(PAPER_METHODS)} to start, 0 already finished" in out.stdout
    assert not results.exists() and not runs.exists()


@pytest.mark.slow
def test_local_sweep_shares_stage1_ingests_and_fills_gaps(store):
    results, runs = store
    out = lvmbench("sweep", "--method", "ce,crt", "--seed", "0", "--max-parallel", "2", "--set", *TINY)
    assert out.returncode == 0, out.stderr
    assert "2 runs, 2 to start, 0 already finished" in out.stdout and "Main results" in out.stdout
    specs = {json.loads(p.read_text())["method"]: json.loads(p.read_text()) for p in runs.glob("*/spec.json")}
    assert specs["crt"]["stage1.run_id"] == next(p.parent.name for p in runs.glob("*ce-s0*/spec.json"))
    assert specs["crt"]["train.threads"] == 1 and specs["ce"]["sweep_id"] == specs["crt"]["sweep_id"]
    q = lvmbench("sql", "SELECT method, status, stage FROM runs ORDER BY stage", "--format", "json")
    assert json.loads(q.stdout) == [{"method": "ce", "status": "finished", "stage": 1},
                                    {"method": "crt", "status": "finished", "stage": 2}]
    again = lvmbench("sweep", "--method", "crt,ce", "--seed", "0", "--set", *TINY)
    assert again.returncode == 0, again.stderr
    assert "2 runs, 0 to start, 2 already finished" in again.stdout
    assert len(list(runs.glob("*/spec.json"))) == 2


class Recorder(Reporter):
    def __init__(self):
        self.events = []

    def started(self, job):
        self.events.append(("started", job.spec["method"]))

    def settled(self, job):
        self.events.append((job.state, job.spec["method"]))


@pytest.mark.slow
def test_a_failed_child_does_not_stop_the_sweep_and_blocks_its_dependents(store):
    results, runs = store
    jobs = plan(grid(["ce", "crt", "zeroshot"], sets=config.parse_sets(TINY)), runs)
    jobs[0].spec["backbone"] = "no-such-backbone"  # the ce child fails; crt never starts
    recorder = Recorder()
    Scheduler(LocalExecutor(local_slots([], max_parallel=1)), runs, results, reporter=recorder, interval=0.1).run(jobs)
    assert recorder.events == [("started", "ce"), ("failed", "ce"), ("started", "zeroshot"),
                               ("blocked", "crt"), ("finished", "zeroshot")]
    by_method = {j.spec["method"]: j for j in jobs}
    assert by_method["crt"].error == "stage-1 run mnist-lt no-such-backbone ce s0 failed"
    assert "unknown backbone 'no-such-backbone'" in by_method["ce"].error
    assert sorted(p.parent.name.split("-")[2] for p in runs.glob("*/spec.json")) == ["ce", "zeroshot"]


def test_varied_settings_are_what_a_settings_sweep_varies_not_a_methods_profile():
    from types import SimpleNamespace

    from lvmbench import config, sweep

    def job(method, **sets):
        return SimpleNamespace(implicit=False, spec=config.resolve("mnist-lt", "tiny-clip", method, overrides=sets))

    # lift and full_finetune bring their own lr, optimizer and head: a grid of methods sweeps no setting
    assert sweep.varied_settings([job("ce"), job("lift"), job("full_finetune"), job("ldam")]) == []
    assert sweep.varied_settings([job("ce", **{"train.lr": 0.01}), job("ce", **{"train.lr": 0.03}),
                                  job("lift")]) == ["train.lr"]


def test_the_plan_shows_which_runs_train_as_fused_groups(tmp_path):
    """The dry run groups runs by the key the local executor fuses on: decoder methods of one seed together,
    stage-2 methods of one stage-1 run together, class-balanced crt apart, baselines and a run that
    continues an interrupted one alone."""
    from lvmbench.sweep import fused_groups

    jobs = plan(grid(["zeroshot", "ce", "focal", "lade", "crt", "disalign", "marc"], seeds=(0, 1)), tmp_path)
    groups = fused_groups(jobs)
    named = {}
    for i, name in groups.items():
        named.setdefault(name, set()).add((jobs[i].spec["method"], jobs[i].spec["seed"]))
    assert sorted(named.values(), key=sorted) == sorted([
        {("ce", 0), ("focal", 0), ("lade", 0)}, {("ce", 1), ("focal", 1), ("lade", 1)},
        {("disalign", 0), ("marc", 0)}, {("disalign", 1), ("marc", 1)}], key=sorted)
    lade = next(j for j in jobs if j.spec["method"] == "lade" and j.spec["seed"] == 0)
    interrupted = prepare(lade.spec, tmp_path)
    interrupted.ckpt_dir.mkdir(parents=True, exist_ok=True)
    (interrupted.ckpt_dir / "last.pt").write_bytes(b"checkpoint")
    interrupted.write_status(status="killed")
    jobs = plan(grid(["ce", "lade"]), tmp_path)
    assert [j.run is not None for j in jobs] == [False, True] and fused_groups(jobs) == {}


def test_dry_run_names_the_fused_groups_for_every_executor(store, capsys):
    from lvmbench import cli

    groups = ("5 of them train in 2 fused group(s) of at most 16 runs, one tower pass per step for each group (g1: 3 runs, g2: 2 runs); "
              "--no-fuse trains every run alone")
    for executor in ("local", "slurm"):  # one scheduler forms the groups: Slurm jobs fuse too
        assert cli.main(["sweep", "--preset", "embedded", "--dry-run", "--executor", executor]) == 0
        assert groups in capsys.readouterr().out
    assert cli.main(["sweep", "--preset", "embedded", "--dry-run", "--no-fuse"]) == 0
    assert "fused" not in capsys.readouterr().out


@pytest.mark.parametrize("key,values", [("data.transform", ("study", "open_clip")), ("cache.views", (1, 2)),
                                        ("data.imbalance_ratio", (100.0, 10.0)), ("encoder.precision", ("auto", "fp32")),
                                        ("data.subsample_lt", (False, True)), ("train.batch_size", (16, 32))])
def test_a_sweep_over_what_the_tower_sees_trains_each_value_in_its_own_group(tmp_path, key, values):
    """Members of a fused group read one tower pass per step: runs whose images, preprocessing, views or
    encoder differ never share a group, however the sweep lists them; the methods of one value do."""
    from lvmbench.sweep import fused_groups

    specs = expand(Axes(["mnist-lt"], ["tiny-clip"], ["ce", "focal"], [0], swept={key: list(values)}))
    jobs = plan(specs, tmp_path)
    named = {}
    for i, name in fused_groups(jobs).items():
        named.setdefault(name, set()).add((jobs[i].spec["method"], jobs[i].spec[key]))
    assert sorted(named.values(), key=sorted) == sorted([{("ce", v), ("focal", v)} for v in values], key=sorted)


def test_the_studys_presets_run_its_three_seeds_and_dry_run_says_so(tmp_path, capsys):
    """Imbalance-VLM scripts/cal_eval.py averages three runs per cell; LIFT and the embedded grid run one."""
    from lvmbench.cli import main

    for name, p in PRESETS.items():
        assert p.seeds == ((0,) if name in ("paper-lift", "embedded") else (0, 1, 2)), name
    assert main(["sweep", "--preset", "paper-resnet", "--method", "ce,focal", "--dry-run",
                 "--runs-dir", str(tmp_path)]) == 0
    assert "6 runs: 6 to start" in capsys.readouterr().out
    assert main(["sweep", "--preset", "paper-resnet", "--method", "ce,focal", "--seed", "4", "--dry-run",
                 "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 runs: 2 to start" in out and "2 table cells of 1 seed(s) each (4;" in out
