"""Fused training groups: one tower pass per step, each member bit-identical to training alone."""
import os
import signal
import time
from types import SimpleNamespace

import pytest
import torch

from lvmbench import cli, config
from lvmbench.exec import runner
from lvmbench.exec.local import LocalChild
from lvmbench.runs import fused, process, scheduler
from lvmbench.runs.rundir import RunDir
from lvmbench.runs.segments import earlier_segments
from lvmbench.store import open_readonly, open_writer, tables
from lvmbench.store.ingest import ingest_runs
from lvmbench.train import checkpoint, loop
from lvmbench.train.__main__ import main as child_main
from lvmbench.train.loop import train_group, train_run

from .conftest import TINY, make_run, trained_metrics


def assert_same_run(a: RunDir, b: RunDir) -> None:
    """Same evaluations, per-class tables, logged metrics and final weights, bit for bit."""
    for split in ("val", "test"):
        assert a.evaluation(split) == b.evaluation(split)
        assert a.per_class(split) == b.per_class(split)
    assert trained_metrics(a) == trained_metrics(b)
    wa, wb = (torch.load(r.ckpt_dir / "model.pt", weights_only=True) for r in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.status()["best_step"] == b.status()["best_step"]


def alone_then_fused(runs, ckpt, methods, between=lambda: None, **extra):
    alone = [make_run(runs, m, ckpt, **extra) for m in methods]
    for run in alone:
        assert train_run(run)["status"] == "finished", run.status().get("error")
    between()
    group = [make_run(runs, m, ckpt, **extra) for m in methods]
    statuses = train_group(group)
    assert [s["status"] for s in statuses] == ["finished"] * len(methods)
    return alone, group


def test_a_fused_group_is_bit_identical_to_its_runs_alone(tmp_path, random_tiny_clip, monkeypatch):
    from lvmbench.models.backbone import Backbone

    calls = []
    original = Backbone.tokens
    monkeypatch.setattr(Backbone, "tokens", lambda self, x: calls.append(len(x)) or original(self, x))
    alone, group = alone_then_fused(tmp_path, random_tiny_clip, ["ce", "focal", "balanced_softmax"],
                                    between=calls.clear)
    for a, b in zip(alone, group):
        assert_same_run(a, b)
    assert calls == [16] * 6  # one tower pass per step for the group (TINY: 6 steps of 16; eval from the cache)
    for run in group:
        status = run.status()
        assert status["fused_size"] == 3 and 0 < status["wall_s"] <= status["group_wall_s"]


def test_partition_by_what_members_share():
    def spec(method, **sets):
        return config.resolve("mnist-lt", "tiny-clip", method, overrides={
            **config.parse_sets(TINY), **config.parse_sets([f"{k}={v}" for k, v in sets.items()])})

    specs = [spec("ce"), spec("focal", **{"train.lr": 0.1}), spec("crt", **{"stage1.run_id": "s1"}),
             spec("zeroshot"), spec("lws", **{"stage1.run_id": "s1"}), spec("ldam", **{"train.batch_size": 8}),
             spec("balanced_softmax"), spec("disalign", **{"stage1.run_id": "s1"})]
    # ldam: another batch size; crt/lws: class-balanced sampling, disalign: instance; zero-shot trains nothing
    assert fused.partition(specs) == [[0, 1, 6], [2, 4], [3], [5], [7]]
    assert fused.partition(specs, fuse=False) == [[i] for i in range(len(specs))]
    # a spec read from another source (a TOML file, --from) lists its keys in another order: still one group
    assert fused.partition([specs[0], dict(reversed(list(specs[1].items())))]) == [[0, 1]]


def test_a_fused_groups_id_names_when_it_was_made():
    """The ``fused_group`` a group's runs record (and ``lvmbench ps`` shows): its local start time to the
    second, then 6 random hex digits that tell apart groups started in the same second."""
    import re

    stamp = "%Y%m%d-%H%M%S"
    before, ids, after = time.strftime(stamp), [fused.new_group_id() for _ in range(2)], time.strftime(stamp)
    made = [re.fullmatch(r"fuse-(\d{8}-\d{6})-[0-9a-f]{6}", i) for i in ids]
    assert all(m and before <= m[1] <= after for m in made) and ids[0] != ids[1], ids

@pytest.mark.slow
def test_two_stage_methods_fuse_over_one_stage1_run(tmp_path, random_tiny_clip):
    stage1 = make_run(tmp_path, "ce", random_tiny_clip)
    assert train_run(stage1)["status"] == "finished"
    alone, group = alone_then_fused(tmp_path, random_tiny_clip, ["crt", "lws"], **{"stage1.run_id": stage1.run_id})
    for a, b in zip(alone, group):
        assert_same_run(a, b)
        assert (b.status()["stage"], b.status()["parent_run_id"]) == (2, stage1.run_id)


@pytest.fixture(scope="module")
def ce_alone(tmp_path_factory, random_tiny_clip):
    """A ce run at the TINY budget trained alone: what a group's ce member must equal."""
    run = make_run(tmp_path_factory.mktemp("alone"), "ce", random_tiny_clip)
    assert train_run(run)["status"] == "finished"
    return run


def test_a_failing_member_does_not_stop_the_group(tmp_path, random_tiny_clip, ce_alone, capsys):
    alone = ce_alone
    diverging = make_run(tmp_path, "focal", random_tiny_clip, **{"train.lr": 1e30})  # first: it leads the group
    ce = make_run(tmp_path, "ce", random_tiny_clip)
    assert child_main([str(diverging.path), str(ce.path)]) == 0
    assert ("failed at step 3: NonFiniteLoss: loss became nan at step 3; lower train.lr (now 1e+30) or check the data"
            in capsys.readouterr().out.splitlines())  # the leader's console line
    failed = diverging.status()
    assert failed["status"] == "failed" and failed["error"].startswith("NonFiniteLoss: loss became nan")
    assert failed["user_error"] is False
    assert ce.status()["status"] == "finished"
    assert_same_run(alone, ce)


def test_without_a_handler_a_members_training_error_is_the_groups(tmp_path, random_tiny_clip):
    """``train_group`` without ``on_failure`` (as a caller that wants the error): the member's own error
    propagates as it is."""
    from lvmbench.train.loop import NonFiniteLoss

    group = [make_run(tmp_path, "focal", random_tiny_clip, **{"train.lr": 1e30}), make_run(tmp_path, "ce", random_tiny_clip)]
    with pytest.raises(NonFiniteLoss, match="^loss became nan at step 3"):
        train_group(group)


def test_a_group_whose_members_all_fail_records_each_failure(tmp_path, random_tiny_clip):
    group = [make_run(tmp_path, m, random_tiny_clip, **{"train.lr": 1e30}) for m in ("focal", "ce")]
    assert child_main([str(r.path) for r in group]) == 0
    assert [(r.status()["status"], r.status()["error"].split(":")[0]) for r in group] == [("failed", "NonFiniteLoss")] * 2


def test_a_member_that_cannot_be_built_does_not_stop_the_group(tmp_path, random_tiny_clip, ce_alone, monkeypatch):
    """A member whose own part fails to build (its model, loss or head) fails alone, also when it leads
    the group and the shared data and tower were built for it."""
    from lvmbench.errors import UserError
    from lvmbench.methods import build

    def broken(build):
        raise UserError("focal's head cannot be built here")

    registered = build.builder
    monkeypatch.setattr(build, "builder", lambda info: broken if info.name == "focal" else registered(info))
    bad = make_run(tmp_path, "focal", random_tiny_clip)  # first: it leads the group
    ce = make_run(tmp_path, "ce", random_tiny_clip)
    assert child_main([str(bad.path), str(ce.path)]) == 0
    failed = bad.status()
    assert failed["status"] == "failed" and "focal's head cannot be built here" in failed["error"]
    assert ce.status()["status"] == "finished"
    assert_same_run(ce_alone, ce)


def test_members_share_what_the_leader_built_and_without_a_handler_a_build_error_is_the_groups(
        tmp_path, random_tiny_clip, monkeypatch):
    """A group holds one dataset and one frozen tower: the members after the first take the leader's. Without
    ``on_failure`` (a run alone, or a caller that wants the error) a member's build error propagates as it is."""
    from lvmbench.errors import UserError
    from lvmbench.methods import build

    runs = [make_run(tmp_path, m, random_tiny_clip) for m in ("ce", "focal")]
    leader, other = loop.Trainer.group(runs)
    assert other.backbone is leader.backbone and other.dataset is leader.dataset and other.device == leader.device
    assert (leader.prints, other.prints) == (True, False)  # one member's lines on the console, the others' in their logs
    registered = build.builder

    def broken(build):
        raise UserError("focal's head cannot be built here")

    monkeypatch.setattr(build, "builder", lambda info: broken if info.name == "focal" else registered(info))
    with pytest.raises(UserError, match="^focal's head cannot be built here$"):
        loop.Trainer.group(runs)


# Checkpoints at 5, 10, 15, 20 and 24; validation at 8, 16 and 24; every step logged.
BUDGET = ["train.iters=24", "train.batch_size=16", "train.eval_every=8", "train.warmup_iters=2",
          "train.log_every=1", "train.threads=1", "ckpt.every=5"]


@pytest.mark.slow
def test_a_killed_fused_group_resumes_exactly(store, random_tiny_clip):
    results, runs = store
    specs = [config.resolve("mnist-lt", "tiny-clip", m, pretrained=random_tiny_clip,
                            overrides=config.parse_sets(BUDGET)) for m in ("ce", "balanced_softmax")]
    reference = [scheduler.prepare(s, runs) for s in specs]
    for run in reference:
        train_run(run)
    group = scheduler.prepare_group(specs, runs)
    proc = process.spawn(group[0], members=group[1:])
    while min(r.last_step() for r in group) < 7:
        assert proc.poll() is None, group[0].log_tail(5)
        time.sleep(0.02)
    assert all(r.lock().held_elsewhere() for r in group)  # each member is owned, like a run alone
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = scheduler.reap(group, LocalChild(proc))
    assert [s["status"] for s in killed] == ["killed", "killed"]
    # The killed segment, sampled from when every member had started to now (it may have ended before its
    # second sample): the group's monitor writes each sample to every member, so all members get the same.
    samples = (max(r.status()["segment_starts"][0] for r in group), time.time())
    for r in group:
        for ts in samples:
            r.append(r.system_file, {"ts": ts, "gpu_index": None, "mem_mib": 1.0, "power_w": None, "energy_j": None})
    status = runner.resume_headless(group[1].run_id, runs, results)  # either member brings back the group
    assert status["status"] == "finished"
    for a, b in zip(reference, group):
        assert b.status()["status"] == "finished" and b.status()["resumes"] == 1
        assert b.status()["segments"] == 2  # the killed segment's cost counts too (the member's share of it)
        assert_same_run(a, b)
    assert "resuming from step 5" in group[1].log_file.read_text()  # the second member's own log
    # the group's cost adds its killed segment too: the members' shares add up to it (README, runs table)
    statuses = [r.status() for r in group]
    assert sum(s["wall_s"] for s in statuses) == pytest.approx(statuses[0]["group_wall_s"], rel=1e-3)


@pytest.mark.slow
def test_run_a_list_of_methods_as_one_fused_group(store, random_tiny_clip, capsys):
    results, runs = store
    assert cli.main(["run", "--headless", "--method", "ce,focal,zeroshot", "--pretrained", random_tiny_clip,
                     "--set", *TINY]) == 0
    with open_readonly(results) as con:
        rows = con.execute("SELECT method, fused_group, fused_size, wall_s, group_wall_s, peak_mem_mib, "
                           "group_peak_mem_mib FROM runs ORDER BY method").fetchall()
    (ce, focal, zeroshot) = rows
    assert ce[1] == focal[1] and ce[1].startswith("fuse-") and ce[2] == focal[2] == 2
    assert ce[4] == focal[4] and 0 < ce[3] <= ce[4] and 0 < focal[3] <= focal[4] and ce[3] + focal[3] == pytest.approx(ce[4])
    assert ce[5] == ce[6]  # a group's peak memory does not divide: each member shows it
    assert zeroshot[1] is None and zeroshot[2] == 1 and zeroshot[3] == zeroshot[4]  # alone: its own costs


def test_a_members_earlier_segments_count_in_its_share(tmp_path):
    """A resumed member's killed segment is read from its samples (the whole process's): it counts
    in the member's share of the segment it finished, as a run alone counts it whole."""
    from lvmbench.runs.segments import total_cost

    run = RunDir.create(tmp_path, {"dataset": "mnist-lt", "method": "ce", "seed": 0})
    run.write_status(segment_starts=[100.0, 200.0])
    for ts, joules in ((100.0, 0.0), (150.0, 3.6e6)):  # the killed segment: 50 s, 1 kWh
        run.append(run.system_file, {"ts": ts, "energy_j": joules, "gpu_index": 0, "power_w": None})
    assert total_cost(run, 10.0, 1.0) == {"wall_s": 60.0, "energy_kwh": 2.0, "segments": 2}
    assert total_cost(run, 5.0, 0.5, part=0.5) == {"wall_s": 30.0, "energy_kwh": 1.0, "segments": 2}


# -- a group resumed from checkpoints at different steps, and what each member's cost says ---------------
# Checkpoints every 4 steps, validation at 6 and 12, every step logged.
SHORT = ["train.iters=12", "train.batch_size=16", "train.eval_every=6", "train.warmup_iters=2",
         "train.log_every=1", "train.threads=1", "ckpt.every=4"]
INPUT_S = 1000.0  # what the fake clock charges for making one step's inputs (data and the tower's pass)
EARLIER_S = 20_000.0  # how long the stopped segment ran, as its samples say


class Stop(Exception):
    """Stands for a kill: the process stops right after a checkpoint."""


@pytest.fixture(scope="module")
def resumed_group(tmp_path_factory, random_tiny_clip):
    """ce and balanced_softmax trained alone (the references) and as a group that stopped right after the
    leader's checkpoint at step 8, while the other member's last checkpoint is at step 4; its samples say
    that segment ran EARLIER_S. The group is then resumed on a clock where making each step's inputs takes
    INPUT_S, as a slow data pipeline and tower would. Returns (references, group, real seconds elapsed)."""
    runs = tmp_path_factory.mktemp("runs")
    specs = [config.resolve("mnist-lt", "tiny-clip", m, pretrained=random_tiny_clip,
                            overrides=config.parse_sets(SHORT)) for m in ("ce", "balanced_softmax")]
    references = [scheduler.prepare(s, runs) for s in specs]
    for run in references:
        assert train_run(run)["status"] == "finished"
    group = scheduler.prepare_group(specs, runs)
    began = time.perf_counter()
    with pytest.MonkeyPatch.context() as mp:
        save = checkpoint.save

        def save_then_stop(path, **state):
            save(path, **state)
            if state["step"] == 8:
                raise Stop

        mp.setattr(checkpoint, "save", save_then_stop)
        with pytest.raises(Stop):
            train_group(group)
    assert [torch.load(r.checkpoint_file, weights_only=False)["step"] for r in group] == [8, 4]
    start = time.time() - EARLIER_S
    for run in group:  # the process samples into every member's system.jsonl
        run.write_status(segment_starts=[start])
        run.append(run.system_file, {"ts": start, "gpu_index": None, "mem_mib": 1.0})
    with pytest.MonkeyPatch.context() as mp:
        slow_inputs_clock(mp)
        assert [s["status"] for s in train_group(group)] == ["finished", "finished"]
    return references, group, time.perf_counter() - began


def slow_inputs_clock(monkeypatch) -> dict:
    """The loop's clock, on which making each step's inputs (data and the tower's pass) takes INPUT_S;
    returns the clock's ``offset`` (what the fake clock has added so far), for a test to add to."""
    clock = {"offset": 0.0}
    inputs = loop.Trainer.train_inputs

    def slow_inputs(self, *args, **kwargs):
        for item in inputs(self, *args, **kwargs):
            clock["offset"] += INPUT_S
            yield item

    monkeypatch.setattr(loop, "time", SimpleNamespace(perf_counter=lambda: time.perf_counter() + clock["offset"]))
    monkeypatch.setattr(loop.Trainer, "train_inputs", slow_inputs)
    return clock


def test_each_member_trains_every_step_and_holds_its_part_of_each_steps_input_time(tmp_path, random_tiny_clip,
                                                                                 monkeypatch):
    """A fresh group of two and a run alone at the TINY budget (6 steps, validated at 3 and 6), on a clock where
    each step's inputs take INPUT_S: each member is charged half of every step's input time, the run alone all
    of it, and every member validates after the steps its budget says."""
    alone = make_run(tmp_path, "ce", random_tiny_clip)
    group = [make_run(tmp_path, m, random_tiny_clip) for m in ("ce", "focal")]
    began = time.perf_counter()
    with pytest.MonkeyPatch.context() as mp:
        slow_inputs_clock(mp)
        assert train_run(alone)["status"] == "finished"
        assert [s["status"] for s in train_group(group)] == ["finished", "finished"]
    real = time.perf_counter() - began
    assert 6 * INPUT_S <= alone.status()["train_s"] <= 6 * INPUT_S + real
    for run in group:
        assert 3 * INPUT_S <= run.status()["train_s"] <= 3 * INPUT_S + real
        assert [r["step"] for r in run.metrics() if "val/overall" in r] == [3, 6]
        saved = torch.load(run.checkpoint_file, weights_only=False)  # saved after the last step: all 6 updates
        assert (saved["step"], saved["scheduler"]["last_epoch"]) == (6, 6)


def test_a_group_starting_records_each_members_process_and_another_rank_follows(tmp_path, random_tiny_clip,
                                                                             monkeypatch):
    """What a cancel signals and ``lvmbench ps`` shows: each member's status holds the training process, its
    host and the process group to signal (the process itself, or under torchrun its parent), before the members
    are built in that rank's process group. A rank other than 0 records nothing and follows rank 0."""
    import socket

    built, followed = [], []

    def build(cls, runs, **kwargs):  # record what the members would be built from, and build none
        built.append(([r.status() for r in runs], kwargs["dist"]))
        return []

    monkeypatch.setattr(loop.Trainer, "group", classmethod(build))
    monkeypatch.setattr(loop, "follow_group", lambda runs, dist: followed.append((runs, dist)))
    group = [make_run(tmp_path, m, random_tiny_clip) for m in ("ce", "focal")]
    main, other = SimpleNamespace(main=True), SimpleNamespace(main=False)
    assert train_group(group, dist=main) == [] and built[-1][1] is main
    here = (os.getpid(), socket.gethostname(), os.getpid())
    assert [(s["status"], s["pid"], s["host"], s["group_pid"]) for s in built[-1][0]] == [("running", *here)] * 2
    monkeypatch.setenv("LOCAL_RANK", "0")  # a torchrun worker: a cancel signals torchrun's group
    assert train_group(group) == [] and built[-1][1] is None
    assert [s["group_pid"] for s in built[-1][0]] == [os.getppid()] * 2
    assert train_group(group, dist=other) == [] and followed == [(group, other)] and len(built) == 2

def built_members(monkeypatch) -> list:
    """The members (Trainers) that ``train_group`` builds, kept for a test to read once they are trained."""
    members, build = [], loop.Trainer.group
    monkeypatch.setattr(loop.Trainer, "group", lambda runs, **kwargs: members.extend(build(runs, **kwargs)) or members)
    return members


def test_runs_that_train_nothing_are_evaluated_and_record_no_training_time(tmp_path, random_tiny_clip, monkeypatch):
    """Zero-shot goes through the same loop as a group with nothing to train: each member finishes with its
    evaluations, no training steps or time, no iteration cost and the final weights; their shares of the wall
    time add up to the group's, the process's peak and sampled memory are recorded, and each status names the
    device, the parameters (none trainable; the head and the frozen image tower in all), the batch size, the
    weights and the group's size."""
    group, members = [make_run(tmp_path, "zeroshot", random_tiny_clip) for _ in range(2)], built_members(monkeypatch)
    statuses = train_group(group)
    for run, status, member in zip(group, statuses, members):
        assert {k: status[k] for k in ("status", "iters", "train_s", "s_per_iter", "selected_on")} == {
            "status": "finished", "iters": 0, "train_s": 0.0, "s_per_iter": None, "selected_on": "final"}
        tower = sum(p.numel() for p in member.backbone.clip.visual.parameters())  # the frozen image tower
        head = sum(p.numel() for p in member.task.model.parameters())
        assert {k: status[k] for k in ("device", "trainable_params", "total_params", "batch_size", "stage",
                                       "parent_run_id", "skipped_images", "weights", "fused_size")} == {
            "device": "cpu", "trainable_params": 0, "total_params": head + tower, "batch_size": 16, "stage": 1,
            "parent_run_id": None, "skipped_images": 0, "weights": member.backbone.weights.describe(), "fused_size": 2}
        assert status["peak_mem_mib"] == status["group_peak_mem_mib"] > 0
        assert all(run.evaluation(split)["n_samples"] for split in ("val", "test"))
        assert run.system() and all(sample["mem_mib"] > 0 for sample in run.system())  # the process's samples
    assert sum(s["wall_s"] for s in statuses) == pytest.approx(statuses[0]["group_wall_s"])


def test_a_run_that_trains_the_image_tower_counts_it_once(tmp_path, random_tiny_clip, monkeypatch):
    """Full fine-tuning holds the image tower in its model: its parameters count once, all of them trainable."""
    run = make_run(tmp_path, "full_finetune", random_tiny_clip, **{"train.iters": 1})
    members = built_members(monkeypatch)
    status = train_run(run)
    model = sum(p.numel() for p in members[0].task.model.parameters())
    assert status["total_params"] == status["trainable_params"] == model > 64 * 10 + 10  # more than the head


def test_a_member_failing_its_evaluation_fails_alone_unless_no_handler_or_alone(tmp_path, random_tiny_clip,
                                                                             monkeypatch):
    """After training, each member saves and evaluates its weights: one that fails there is reported to the
    handler and the others still finish; without a handler, or alone, the error is the caller's."""
    class Unreadable(Exception):
        pass

    evaluate, failing = loop.finish_run, set()

    def finish(member):
        if member.run.run_id in failing:
            raise Unreadable("the test split cannot be read")
        evaluate(member)

    monkeypatch.setattr(loop, "finish_run", finish)

    def zero_shots(n):  # members that train nothing: only the step after training runs
        runs = [make_run(tmp_path / str(len(failing)), "zeroshot", random_tiny_clip) for _ in range(n)]
        failing.add(runs[0].run_id)
        return runs

    failed, group = [], zero_shots(2)
    statuses = train_group(group, on_failure=lambda run, exc: failed.append((run.run_id, str(exc))))
    assert [s["status"] for s in statuses] == ["finished"] and group[1].status()["status"] == "finished"
    assert failed == [(group[0].run_id, "the test split cannot be read")]
    with pytest.raises(Unreadable):
        train_group(zero_shots(2))
    with pytest.raises(Unreadable):
        train_group(zero_shots(1), on_failure=lambda run, exc: failed.append(run))

STEP_S = 300.0  # what the fake clock charges focal for each of its own steps in the test below
EVAL_S = 5000.0  # and for its evaluation after training


def test_a_fused_members_share_is_its_own_step_time_plus_its_part_of_the_inputs(tmp_path, random_tiny_clip):
    """A group of two where focal's own steps are slow (STEP_S each on the fake clock, as a costly method's
    would be), so is its evaluation after training (EVAL_S), and each step's inputs take INPUT_S: focal's
    train_s exceeds ce's by its 6 steps' own time, its wall time by those and its evaluation, the shares add
    up to the group's wall time, its energy is its share's, and each member records the loader's wait it
    trained with (its status's mean and the logged steps')."""
    group = [make_run(tmp_path, m, random_tiny_clip) for m in ("ce", "focal")]
    began = time.perf_counter()
    with pytest.MonkeyPatch.context() as mp:
        clock = slow_inputs_clock(mp)
        step = loop.Trainer.train_step

        def costly_focal_step(self, *args):
            step(self, *args)
            clock["offset"] += STEP_S if self.spec["method"] == "focal" else 0.0

        mp.setattr(loop.Trainer, "train_step", costly_focal_step)
        evaluate = loop.finish_run

        def costly_focal_evaluation(member):
            evaluate(member)
            clock["offset"] += EVAL_S if member.spec["method"] == "focal" else 0.0

        mp.setattr(loop, "finish_run", costly_focal_evaluation)
        summary = loop.SystemMonitor.summary  # the process draws 1 kW throughout (as a GPU board's would)
        mp.setattr(loop.SystemMonitor, "summary", lambda self, wall_s: {**summary(self, wall_s),
                                                                         "energy_kwh": wall_s / 3600})
        assert [s["status"] for s in train_group(group)] == ["finished", "finished"]
    real = time.perf_counter() - began
    ce, focal = (run.status() for run in group)
    assert abs(focal["train_s"] - ce["train_s"] - 6 * STEP_S) <= real  # evaluating is not training
    assert abs(focal["wall_s"] - ce["wall_s"] - 6 * STEP_S - EVAL_S) <= real
    assert 3 * INPUT_S <= ce["wall_s"] <= 3 * INPUT_S + real
    assert ce["wall_s"] + focal["wall_s"] == pytest.approx(ce["group_wall_s"]) == focal["group_wall_s"]
    assert ce["iters"] == focal["iters"] == 6
    for status in (ce, focal):  # each member's energy is its share of the group's
        assert status["energy_kwh"] == pytest.approx(status["wall_s"] / 3600)
        assert status["group_energy_kwh"] == pytest.approx(status["group_wall_s"] / 3600)
    for run, status in zip(group, (ce, focal)):
        logged = [r[loop.LOADER_WAIT] for r in run.metrics() if "loss" in r]
        assert len(logged) == 3 and all(w >= 0 for w in logged) and status["loader_wait_s"] >= 0


@pytest.mark.slow
def test_a_member_resumed_ahead_of_the_others_does_not_retrain_its_steps(resumed_group):
    references, group, _ = resumed_group
    for a, b in zip(references, group):
        assert_same_run(a, b)


@pytest.mark.slow
def test_a_members_training_time_holds_its_part_of_the_shared_input_time(resumed_group, tmp_path):
    """The resumed segment makes the inputs of steps 4-11: steps 4-7 for balanced_softmax alone, steps
    8-11 for both. Each member's train_s (and the cost table's s/iter) counts only its part of them."""
    _, (ce, bs), real = resumed_group
    ce_s, bs_s = ce.status()["train_s"], bs.status()["train_s"]
    assert 4 * INPUT_S / 2 <= ce_s <= 4 * INPUT_S / 2 + real
    assert 4 * INPUT_S + 4 * INPUT_S / 2 <= bs_s <= 4 * INPUT_S + 4 * INPUT_S / 2 + real
    db = tmp_path / "r.duckdb"
    with open_writer(db) as con:
        ingest_runs(con, [ce, bs])
    with open_readonly(db) as con:
        table = tables.build(con, "cost")
    s_per_iter = {r[0]: r[table.columns.index("s/iter")] for r in table.rows}
    assert s_per_iter == {"ce": pytest.approx(ce_s / 12), "balanced_softmax": pytest.approx(bs_s / 12)}


@pytest.mark.slow
def test_a_resumed_groups_earlier_segment_counts_once_over_its_members(resumed_group):
    """The stopped segment's samples are the whole process's: each member counts its part of it, so the
    members' wall times add up to the group's, both segments together."""
    _, group, real = resumed_group
    earlier = earlier_segments(group[0])
    assert len(earlier) == 1 and earlier[0]["wall_s"] >= EARLIER_S - 1
    assert all(r.status()["segments"] == 2 for r in group)
    this_segment = sum(r.status()["wall_s"] for r in group) - earlier[0]["wall_s"]
    assert 8 * INPUT_S <= this_segment <= 8 * INPUT_S + real


@pytest.mark.slow
def test_a_resumed_groups_member_shares_add_up_to_its_group_wall_time(resumed_group):
    """The README's promise: the members' shares add up to ``group_wall_s``."""
    _, group, _ = resumed_group
    total = sum(r.status()["wall_s"] for r in group)
    assert all(r.status()["group_wall_s"] == pytest.approx(total) for r in group)
