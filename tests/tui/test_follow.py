"""Following growing run files and folding them into the Live screen's series."""
from __future__ import annotations

import json

import pytest

from lvmbench.runs.rundir import RunDir
from lvmbench.tui.follow import LiveData, RunFollower, RunUpdate, Tail, format_seconds


def test_tail_returns_only_complete_new_lines(tmp_path):
    path = tmp_path / "log"
    tail = Tail(path)
    assert tail.read_lines() == []  # no file yet
    path.write_text("one\ntw")
    assert tail.read_lines() == ["one"]
    with open(path, "a") as f:
        f.write("o\nthree\n")
    assert tail.read_lines() == ["two", "three"]
    assert tail.read_lines() == []


def test_tail_restarts_after_truncation_and_keeps_last_carriage_return_segment(tmp_path):
    path = tmp_path / "log"
    path.write_text("aaaa\nbbbb\n")
    tail = Tail(path)
    assert tail.read_lines() == ["aaaa", "bbbb"]
    path.write_text("x\n")  # truncated (shorter than the offset): read from the start again
    assert tail.read_lines() == ["x"]
    with open(path, "a") as f:
        f.write("10%\r50%\r100%\n")
    assert tail.read_lines() == ["100%"]


def test_tail_of_a_long_file_starts_at_a_whole_line_near_its_end(tmp_path):
    path = tmp_path / "log"
    path.write_text("".join(f"line {i:03d}\n" for i in range(100)))  # 9 bytes a line
    assert Tail(path, start_bytes=30).read_lines() == ["line 097", "line 098", "line 099"]


def test_tail_records_skip_corrupt_lines(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\nnot json\n[1, 2]\n{"step": 2}\n')
    assert Tail(path).read_records() == [{"step": 1}, {"step": 2}]


def test_follower_reports_spec_once_and_status_when_it_changes(tmp_path):
    run = RunDir.create(tmp_path, {"dataset": "d", "method": "ce", "seed": 0, "train.iters": 40}, run_id="r1")
    follower = RunFollower(run)
    first = follower.poll()
    assert first.spec["train.iters"] == 40 and first.status["status"] == "queued"
    assert not follower.poll()  # nothing new
    run.append(run.metrics_file, {"step": 10, "loss": 1.0, "lr": 0.1, "ts": 5.0})
    second = follower.poll()
    assert second.metrics == [{"step": 10, "loss": 1.0, "lr": 0.1, "ts": 5.0}] and second.spec is None


def test_live_data_series_and_eta_by_hand():
    data = LiveData("r")
    data.apply(RunUpdate("r", spec={"train.iters": 100}, status={"status": "running"}, metrics=[
        {"step": 10, "loss": 2.0, "lr": 0.01, "ts": 100.0},
        {"step": 10, "val/overall": 50.0, "val/few": 20.0, "ts": 101.0},
        {"step": 30, "loss": 1.0, "lr": 0.03, "ts": 110.0}]))
    assert data.loss.x == [10, 30] and data.loss.y == [2.0, 1.0] and data.lr.y == [0.01, 0.03]
    assert data.val_overall.x == [10] and data.val_few.y == [20.0]
    assert data.step == 30
    # 20 steps took 10 s: 0.5 s/step, 70 steps left -> 35 s
    assert data.eta_s() == 35.0


def test_eta_from_the_first_step_at_the_rate_since_the_run_started():
    data = LiveData("r", iters=100)
    assert data.eta_s() is None
    data.apply(RunUpdate("r", metrics=[{"step": 10, "loss": 2.0, "lr": 0.1, "ts": 1.0}]))
    assert data.eta_s() is None  # neither a start nor a second step: no rate
    data.apply(RunUpdate("r", status={"status": "running", "started_at": -4.0}))
    assert data.eta_s() == 90 * 0.5  # 10 steps in 5 s since it started
    resumed = LiveData("r", iters=100)  # a resumed segment does not start at step 0: wait for a second step
    resumed.apply(RunUpdate("r", status={"status": "running", "started_at": 0.0, "resumes": 1},
                            metrics=[{"step": 60, "loss": 1.0, "lr": 0.1, "ts": 5.0}]))
    assert resumed.eta_s() is None


def test_eta_reads_the_rate_of_the_recent_steps_of_the_current_segment():
    """A UI that starts while a resumed run trains reads the whole metrics file: the first segment, a pause,
    the steps redone after the checkpoint. The rate is that of the last steps since the segment started."""
    data = LiveData("r")
    first = [{"step": s, "loss": 1.0, "lr": 0.1, "ts": float(s)} for s in range(10, 60, 10)]  # 1 s/step
    again = [{"step": s, "loss": 1.0, "lr": 0.1, "ts": 1000.0 + (s - 40) * 0.1} for s in range(40, 80, 10)]
    data.apply(RunUpdate("r", spec={"train.iters": 100}, status={"status": "running", "started_at": 999.0,
                                                                 "resumes": 1}, metrics=first + again))
    assert data.step == 70
    assert abs(data.eta_s() - 30 * 0.1) < 1e-9  # 0.1 s/step now, not the average over the pause
    slow = [{"step": s, "loss": 1.0, "lr": 0.1, "ts": float(s)} for s in range(1, 40)]  # 1 s/step early on
    fast = [{"step": s, "loss": 1.0, "lr": 0.1, "ts": 39.0 + (s - 39) * 0.2} for s in range(40, 61)]
    recent = LiveData("r", iters=100)
    recent.apply(RunUpdate("r", metrics=slow + fast))
    assert abs(recent.eta_s() - 40 * 0.2) < 1e-9  # the last RATE_WINDOW steps, not since step 1


def test_system_samples_sum_gpus_sampled_together_and_time_from_first_sample():
    data = LiveData("r")
    data.apply(RunUpdate("r", system=[
        {"ts": 50.0, "gpu_index": 0, "mem_mib": 100.0, "power_w": 60.0},
        {"ts": 50.0, "gpu_index": 1, "mem_mib": 300.0, "power_w": 90.0},
        {"ts": 52.0, "gpu_index": 0, "mem_mib": 150.0, "power_w": None}]))
    assert data.gpu
    assert data.mem.x == [0.0, 2.0] and data.mem.y == [400.0, 150.0]
    assert data.power.x == [0.0] and data.power.y == [150.0]


def test_cpu_samples_have_memory_and_no_power():
    data = LiveData("r")
    data.apply(RunUpdate("r", system=[{"ts": 1.0, "gpu_index": None, "mem_mib": 800.0, "power_w": None}]))
    assert not data.gpu and data.mem.y == [800.0] and data.power.x == []


def test_format_seconds():
    assert [format_seconds(s) for s in (None, 0, 59.6, 61, 3723)] == ["–", "0:00", "1:00", "1:01", "1:02:03"]


def test_log_keeps_its_last_lines():
    data = LiveData("r")
    data.apply(RunUpdate("r", log=[str(i) for i in range(1000)]))
    assert len(data.log) == 300 and data.log[-1] == "999"


def test_a_long_series_is_thinned_evenly_to_a_few_thousand_points():
    from lvmbench.tui.follow import MAX_POINTS, Series

    series = Series()
    for step in range(100_000):
        series.add(step, step * 0.5)
        series.add(step, None)  # not a number: not a point
    assert MAX_POINTS <= len(series.x) < 2 * MAX_POINTS
    gaps = {b - a for a, b in zip(series.x, series.x[1:])}
    assert gaps == {series.stride} and series.x[0] == 0 and series.x[-1] >= 100_000 - series.stride
    assert series.y == [x * 0.5 for x in series.x]
    short = Series()
    for step in range(10):
        short.add(step, 1.0)
    assert short.x == list(range(10))


def test_live_shows_the_loader_wait_of_the_last_record_and_its_share_of_a_step():
    from lvmbench.tui.screens.live import loader_wait_text

    data = LiveData("r")
    data.apply(RunUpdate("r", metrics=[{"step": 10, "loss": 2.0, "lr": 0.1, "ts": 100.0}]))
    assert data.loader_wait() is None and loader_wait_text(data) == ""  # no loader (cached views): nothing shown
    data.apply(RunUpdate("r", metrics=[{"step": 20, "loss": 1.5, "lr": 0.1, "ts": 104.0, "loader_wait_s": 0.3}]))
    assert data.loader_wait() == (0.3, pytest.approx(0.75))  # 10 steps in 4 s: 0.4 s a step, 0.3 s of it waiting
    assert loader_wait_text(data) == " · loader wait 300 ms/step (75%)"
    data.apply(RunUpdate("r", metrics=[{"step": 20, "val/overall": 50.0, "ts": 105.0}]))
    assert data.loader_wait_s == 0.3  # a validation record keeps it
    first = LiveData("r")
    first.apply(RunUpdate("r", metrics=[{"step": 10, "loss": 2.0, "lr": 0.1, "ts": 1.0, "loader_wait_s": 0.02}]))
    assert loader_wait_text(first) == " · loader wait 20 ms/step"  # one record: no step time yet
