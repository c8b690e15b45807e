"""First contact with a GPU (#29), without one: a fake NVML (``tests/fake_nvml.py``) and torch's CUDA
queries patched to match exercise the refusal to train on the CPU by accident, device discovery by
UUID (MIG included), GPU claims, core shares, the monitor's per-process and per-board figures, the
CUDA RNG state of checkpoints, Slurm's local cluster, fused-group caps, rank agreement and cancel."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

from lvmbench import cli, config
from lvmbench.exec.local import LocalExecutor, Slot, claim_slot, local_slots
from lvmbench.runs import devices, fused, process, scheduler
from lvmbench.runs.plan import plan
from lvmbench.runs.scheduler import Scheduler, prepare
from lvmbench.train import cache, checkpoint, gpus
from lvmbench.train.distributed import Dist
from lvmbench.train.monitor import SystemMonitor

from . import fake_nvml
from .conftest import TINY
from .fake_nvml import FakeGpu, FakeNvml


@pytest.fixture
def gpu_box(monkeypatch, tmp_path):
    """Four H100s, GPU 3 split into two MIG instances; CUDA_VISIBLE_DEVICES unset; GPU claims under tmp_path."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("LVMBENCH_GPU_LOCKS", str(tmp_path / "gpu-locks"))
    boards = fake_nvml.h100s(3) + [FakeGpu("GPU-mig-parent", mig=[FakeGpu("MIG-aaaa-1"), FakeGpu("MIG-bbbb-2")])]
    return FakeNvml(boards)


# -- 1. no silent CPU training ----------------------------------------------------------------------

def test_run_refuses_gpus_torch_cannot_use_in_one_line(store, gpu_box, monkeypatch, capsys):
    results, runs = store
    fake_nvml.install(monkeypatch, gpu_box, usable=False, torch_cuda="13.0")
    assert cli.main(["run", "--headless", "--set", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "5 GPU(s) visible (NVIDIA driver 535.104.05, supports CUDA 12.2)" in err
    assert "a CUDA 13.0 build" in err and "install a torch build for CUDA 12.2 or older" in err
    assert "--device cpu" in err
    assert not runs.exists() and not results.exists()  # nothing trained, nothing created


def test_the_child_refuses_too(gpu_box, monkeypatch):
    """A Slurm task (or a run started on another machine) checks on the node that trains it."""
    from lvmbench.errors import UserError

    fake_nvml.install(monkeypatch, gpu_box, usable=False, torch_cuda=None)
    with pytest.raises(UserError, match="a CPU-only build"):
        gpus.run_device("auto")
    assert gpus.run_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # GPUs hidden on purpose: a CPU run
    assert gpus.run_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match="train.device=cuda, but no GPU is visible"):
        gpus.run_device("cuda")


@pytest.mark.slow
def test_device_cpu_trains_on_the_cpu_on_purpose(store, gpu_box, monkeypatch):
    results, runs = store
    fake_nvml.install(monkeypatch, gpu_box, usable=False)
    assert cli.main(["run", "--headless", "--device", "cpu", "--json", "--set", *TINY]) == 0
    (run,) = runs.iterdir()
    status = process.RunDir(run).status()
    assert status["status"] == "finished" and status["device"] == "cpu"
    assert process.RunDir(run).spec()["train.device"] == "cpu"


# -- 2. the right GPUs, by UUID -------------------------------------------------------------------

def test_nvml_lists_gpus_and_mig_instances_with_driver_versions(gpu_box):
    machine = devices.machine_from(gpu_box)
    assert [g.uuid for g in machine.gpus] == [g.uuid for g in gpu_box.gpus[:3]] + ["MIG-aaaa-1", "MIG-bbbb-2"]
    assert machine.gpus[3].parent == "GPU-mig-parent" and machine.gpus[3].index == 3
    assert (machine.driver, machine.cuda) == ("535.104.05", "12.2")


def test_cuda_visible_devices_resolves_indices_uuids_and_mig_like_cuda(gpu_box):
    machine = devices.machine_from(gpu_box)
    uuids = [g.uuid for g in machine.gpus]
    pick = lambda value: [g.uuid for g in devices.visible(machine.gpus, devices.visible_entries(value))]  # noqa: E731
    assert pick(None) == uuids
    assert pick("") == [] and pick("-1") == []
    assert pick("2,0") == [uuids[2], uuids[0]]
    assert pick(f"{uuids[1]},MIG-bbbb-2") == [uuids[1], "MIG-bbbb-2"]
    assert pick("GPU-00000002") == [uuids[2]]  # a unique prefix, as CUDA accepts
    assert pick("1,7,0") == [uuids[1]]  # CUDA stops at the first entry naming no device


def test_torch_devices_map_to_nvml_uuids_mig_included(gpu_box, monkeypatch):
    machine = devices.machine_from(gpu_box)
    mig = [g for g in gpu_box.gpus[3].mig]
    fake_nvml.install(monkeypatch, gpu_box, torch_devices=[gpu_box.gpus[1], mig[1]])
    assert gpus.run_uuids(Dist(0, 2, 0), machine) == [gpu_box.gpus[1].uuid, "MIG-bbbb-2"]
    assert gpus.run_uuids(Dist(), machine) == [gpu_box.gpus[1].uuid]  # one process: its own device only


def test_monitor_samples_every_gpu_of_the_run_per_process_memory_and_sums_energy(gpu_box, monkeypatch):
    a, b = gpu_box.gpus[0], gpu_box.gpus[1]
    b.energy_step_j, b.power_w = None, 200.0  # no energy counter on this one: power x time
    a.processes = {os.getpid(): 3 * 2**30}
    b.processes = {os.getpid(): 2**30, 999_999: 5 * 2**30}  # another program shares GPU b
    fake_nvml.install(monkeypatch, gpu_box)
    records = []
    monitor = SystemMonitor(records.append, gpus=[a.uuid, b.uuid])
    for _ in range(3):
        monitor.sample()
    by_gpu = {r["gpu_uuid"]: r for r in records}
    assert by_gpu[a.uuid]["mem_mib"] == 3 * 1024 and by_gpu[a.uuid]["mem_scope"] == "process"
    assert by_gpu[b.uuid]["mem_mib"] == 1024 and by_gpu[b.uuid]["device_mem_mib"] == 1024.0
    assert not by_gpu[a.uuid]["shared"] and by_gpu[b.uuid]["shared"]
    summary = monitor.summary(wall_s=10.0)
    assert summary["avg_power_w"] == pytest.approx(300.0 + 200.0)  # summed over GPUs, not averaged
    assert summary["energy_kwh"] * 3.6e6 == pytest.approx(200.0 + 200.0 * 10.0)  # counter delta + power x time
    assert summary["gpu_uuids"] == sorted([a.uuid, b.uuid]) and summary["gpu_shared"] is True


def test_mig_instances_read_memory_of_their_own_and_energy_of_their_board_once(gpu_box, monkeypatch):
    fake_nvml.install(monkeypatch, gpu_box)
    records = []
    monitor = SystemMonitor(records.append, gpus=["MIG-aaaa-1", "MIG-bbbb-2"])
    monitor.sample()
    monitor.sample()
    assert {r["board_uuid"] for r in records} == {"GPU-mig-parent"} and all(r["power_w"] == 300.0 for r in records)
    summary = monitor.summary(wall_s=5.0)
    assert summary["avg_power_w"] == pytest.approx(300.0)  # one board, counted once
    # four counter reads of one board, 100 J apart: 300 J from the first to the last
    assert summary["energy_kwh"] * 3.6e6 == pytest.approx(300.0)


# -- 3. every run on its own GPU --------------------------------------------------------------------

def test_concurrent_children_get_different_free_gpus(gpu_box, monkeypatch):
    gpu_box.gpus[0].processes = {999_999: 2**30}  # another program uses GPU 0: taken last
    monkeypatch.setitem(sys.modules, "pynvml", gpu_box)
    first, held = devices.place("auto", 1, say=lambda text: None)
    second, held2 = devices.place("auto", 1, say=lambda text: None)
    uuids = [g.uuid for g in gpu_box.gpus]
    assert first["CUDA_VISIBLE_DEVICES"] == uuids[1] and second["CUDA_VISIBLE_DEVICES"] == uuids[2]
    assert devices.CPUS_ENV in first and first["OMP_NUM_THREADS"] == str(len(devices.own_cores()))
    process.release_owners(held)
    third, held3 = devices.place("auto", 1, say=lambda text: None)
    assert third["CUDA_VISIBLE_DEVICES"] == uuids[1]  # released with the child that held it
    process.release_owners(held2 + held3)
    cpu, none = devices.place("cpu", 2)
    assert cpu["CUDA_VISIBLE_DEVICES"] == "" and none == []


def test_claims_pick_idle_unclaimed_gpus_first():
    idle, busy, claimed = devices.Gpu("GPU-a"), devices.Gpu("GPU-b", busy_pids=(42,)), devices.Gpu("GPU-c")
    assert devices.pick([busy, idle, claimed], {"GPU-c"}, 1) == [idle]
    assert devices.pick([busy, idle, claimed], {"GPU-c"}, 2) == [idle, busy]
    assert devices.pick([busy, idle, claimed], {"GPU-c"}, 3) is None
    assert devices.pick([busy], set(), 1, own_pids={42}) == [busy]  # our own process does not make it busy


def test_sweep_slots_are_gpus_by_uuid_each_with_its_share_of_the_cores(gpu_box, monkeypatch):
    machine = devices.machine_from(gpu_box)
    slots = local_slots(max_parallel=4, nproc=1, cpus=16, machine=machine)
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == [g.uuid for g in machine.gpus[:4]]
    assert [s.env[devices.CPUS_ENV] for s in slots] == ["0-3", "4-7", "8-11", "12-15"]
    assert all(s.threads == 4 and s.env["OMP_NUM_THREADS"] == "4" for s in slots)
    pairs = local_slots(nproc=2, cpus=16, machine=machine)
    assert [s.env["OMP_NUM_THREADS"] for s in pairs] == ["4", "4"] and pairs[0].threads == 4  # 8 cores, 2 ranks


def test_a_slot_whose_gpu_another_run_holds_is_passed_over(gpu_box, monkeypatch):
    free = local_slots(cpus=4, machine=devices.machine_from(gpu_box))
    elsewhere = devices.gpu_lock(free[0].gpus[0])
    assert elsewhere.acquire()  # e.g. an `lvmbench run` training on it
    executor = LocalExecutor(list(free))
    slot = executor.take_slot(free)
    assert slot.gpus[0].uuid == gpu_box.gpus[1].uuid and slot not in free
    executor.put_back(slot, free)  # not launched: its claim goes back
    assert free[0] is slot and (again := devices.gpu_lock(slot.gpus[0])).acquire()
    process.release_owners([elsewhere, again])
    assert claim_slot([]) is None


def test_lvmbench_run_claims_free_gpus_when_its_child_starts(gpu_box, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", gpu_box)
    started = []
    monkeypatch.setattr(process, "spawn", lambda run, env=None, *a, claims=(), **kw: started.append((env, claims))
                        or SimpleNamespace(owners=list(claims)))
    executor = LocalExecutor([Slot("here", place=True)], say=lambda text: None)
    run = prepare({"dataset": "mnist-lt", "method": "ce", "seed": 0}, tmp_path / "runs")
    children = [executor.launch([run], executor.slots[0]) for _ in range(2)]
    assert [env["CUDA_VISIBLE_DEVICES"] for env, _ in started] == [g.uuid for g in gpu_box.gpus[:2]]
    for child in children:
        child.release()
    third = executor.launch([run], executor.slots[0])  # the first GPU's claim went back with its child
    assert started[-1][0]["CUDA_VISIBLE_DEVICES"] == gpu_box.gpus[0].uuid
    third.release()


# -- 4. resume where fewer GPUs are visible -----------------------------------------------------------

def test_checkpoints_keep_the_cuda_rng_state_of_the_run_own_device(monkeypatch):
    restored = []
    own = torch.arange(4, dtype=torch.uint8)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": own)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("every visible GPU's state"))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": restored.append(state))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: pytest.fail("one state per visible GPU"))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    state = checkpoint.rng_state()
    assert state["cuda"] is own
    checkpoint.set_rng_state(state)
    # an older checkpoint saved 8 GPUs' states; this machine shows 1: the run's own (device 0) comes back
    checkpoint.set_rng_state({**state, "cuda": [own + i for i in range(8)]})
    assert torch.equal(restored[0], own) and torch.equal(restored[1], own)


# -- 5. Slurm's local cluster -------------------------------------------------------------------------

def test_slurm_local_tasks_claim_free_gpus_instead_of_gpu_0(gpu_box, tmp_path, monkeypatch):
    from lvmbench.exec.slurm import RunJob

    monkeypatch.setitem(sys.modules, "pynvml", gpu_box)
    started = []

    def fake_spawn(run, env=None, debug=False, nproc=1, claims=(), **kw):
        started.append((env, claims))
        return SimpleNamespace(pid=0, poll=lambda: 0, owners=[])

    monkeypatch.setattr(process, "spawn", fake_spawn)
    monkeypatch.setattr(scheduler, "reap", lambda runs, child: [{"status": "finished"}])
    runs = [prepare({"dataset": "mnist-lt", "method": "ce", "seed": s}, tmp_path / "runs") for s in (0, 1)]
    for run in runs:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # what submitit's local cluster gives every job
        RunJob([str(run.path)], local=True, visible=None)()
    assert [env["CUDA_VISIBLE_DEVICES"] for env, _ in started] == [g.uuid for g in gpu_box.gpus[:2]]
    process.release_owners([lock for _, claims in started for lock in claims])


# -- 6. fused groups leave no free GPU idle --------------------------------------------------------------

@pytest.mark.parametrize("ready,free,cap", [(8, 8, 1), (8, 2, 4), (8, 3, 3), (3, 8, 1), (5, 1, 5)])
def test_a_fused_group_is_capped_so_every_free_slot_gets_work(ready, free, cap):
    assert devices.group_cap(ready, free) == cap


def test_the_scheduler_splits_ready_decoder_losses_over_free_slots(tmp_path, monkeypatch):
    methods = ["ce", "focal", "ldam", "balanced_softmax", "lade", "cbw", "logit_adjust", "grw"]
    specs = [config.resolve("mnist-lt", "tiny-clip", m, overrides=config.parse_sets(TINY)) for m in methods]
    assert fused.partition(specs) == [list(range(8))]  # one group when nothing says how many slots are free
    assert [len(g) for g in fused.partition(specs, free_slots=3)] == [3, 3, 2]
    executor, launched = LocalExecutor(local_slots([], max_parallel=4, cpus=4)), []
    monkeypatch.setattr(executor, "launch", lambda runs, slot, owners, after: launched.append((slot.name, runs))
                        or SimpleNamespace(poll=lambda: None))
    runs = tmp_path / "runs"
    Scheduler(executor, runs, tmp_path / "r.duckdb", ingest=False, interval=0.01).run(plan(specs, runs), follow=False)
    assert [len(group) for _, group in launched] == [2, 2, 2, 2]  # ⌈8 / 4⌉: every free slot gets work
    assert len({name for name, _ in launched}) == 4


# -- 7. cores divided between slots and ranks ------------------------------------------------------------

def test_cpu_lists_and_shares():
    assert devices.parse_cpus("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    assert devices.format_cpus([11, 0, 1, 2, 3, 8, 10]) == "0-3,8,10-11"
    assert devices.split_cores(list(range(10)), 3) == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert devices.split_cores([0, 1], 4) == [[0], [1], [0], [1]]


def test_each_rank_takes_its_part_of_the_child_cores(monkeypatch):
    pinned = []
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cores: pinned.append(sorted(cores)), raising=False)
    env = devices.cpu_env(list(range(8, 16)), ranks=2)
    assert env["OMP_NUM_THREADS"] == "4"
    assert devices.take_rank_share(env, rank=1, ranks=2) == [12, 13, 14, 15]
    assert pinned == [[12, 13, 14, 15]] and env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "4"
    assert devices.take_rank_share({}, 0, 1) is None


def test_a_slurm_task_divides_its_allocation_not_the_node(tmp_path, monkeypatch):
    from lvmbench.exec.slurm import RunJob

    started = []
    monkeypatch.setattr(devices, "own_cores", lambda: list(range(64)))  # no task affinity on this cluster
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "8")
    monkeypatch.setattr(process, "spawn", lambda run, env=None, **kw: started.append(env) or
                        SimpleNamespace(pid=0, poll=lambda: 0, owners=[]))
    monkeypatch.setattr(scheduler, "reap", lambda runs, child: [{"status": "finished"}])
    run = prepare({"dataset": "mnist-lt", "method": "ce", "seed": 0}, tmp_path / "runs")
    RunJob([str(run.path)], nproc=2)()
    assert started[0][devices.CPUS_ENV] == "0-7" and started[0]["OMP_NUM_THREADS"] == "4"
    assert "CUDA_VISIBLE_DEVICES" not in started[0]  # Slurm's own GPUs


def test_the_auto_loader_workers_follow_the_rank_share(monkeypatch):
    from lvmbench.train.loader import data_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {4, 5, 6}, raising=False)
    assert data_workers(-1, "cuda") == 2  # 3 cores: 2 workers and the training process


# -- 8. the cached path on a GPU ---------------------------------------------------------------------

def test_cached_rows_stream_in_order_a_thread_ahead(tmp_path):
    rows = torch.arange(40, dtype=torch.float32).reshape(20, 2).to(torch.bfloat16)
    feats = cache.CachedFeatures([rows[:10], rows[10:]], 10)
    batches = [torch.tensor([3, 15]), torch.tensor([0]), torch.tensor([19, 2, 2])]
    out = list(cache.stream(feats, batches, torch.device("cpu")))
    assert [r.tolist() for _, r in out] == [b.tolist() for b in batches]
    for (x, _), b in zip(out, batches):
        assert torch.equal(x, rows[b])


def test_prefetch_raises_a_reader_error_where_it_happened():
    def items():
        yield 1
        yield 2
        raise OSError("shard gone")

    got = []
    with pytest.raises(OSError, match="shard gone"):
        for item in cache.prefetch(items()):
            got.append(item)
    assert got == [1, 2]


def test_rows_bound_for_a_gpu_are_pinned_copied_then_checked_there(monkeypatch):
    events = []

    class Rows(cache.CachedFeatures):
        def check(self, x):
            events.append(("check", getattr(x, "placed_on", "host")))
            return x

    def pin(x):
        events.append(("pin",))
        return x.clone()

    def copy(x, device):
        events.append(("copy", device.type))
        y = x.clone()
        y.placed_on = device.type
        return y

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin)
    monkeypatch.setattr(cache, "to_device", copy)
    feats = Rows([torch.zeros(4, 2, dtype=torch.bfloat16)], 4)  # rows in host memory (a memory map)
    list(cache.stream(feats, [torch.tensor([1])], torch.device("cuda")))
    assert events == [("pin",), ("copy", "cuda"), ("check", "cuda")]  # no finiteness check on the CPU
    events.clear()
    list(cache.stream(feats, [torch.tensor([1])], torch.device("cpu")))
    assert events == [("check", "host"), ("copy", "cpu")]  # for a CPU run: checked as read, nothing pinned


# -- 9. timing on a GPU --------------------------------------------------------------------------------

def test_member_timing_waits_for_the_gpu(monkeypatch):
    from lvmbench.train.loop import clock

    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    clock(torch.device("cuda", 1))
    clock(torch.device("cpu"))
    assert synced == [torch.device("cuda", 1)]


# -- 10. multi-GPU failure modes --------------------------------------------------------------------------

def _agree_worker(rank: int, port: int, out) -> None:
    import torch.distributed as td

    td.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    dist = Dist(rank, 2, rank)
    results = []
    for fail_on in (None, 1):
        failure = RuntimeError("CUDA out of memory") if rank == fail_on else None
        loss = None if failure else torch.tensor(float(rank + 1))
        try:
            results.append(round(float(dist.agree(loss, failure, torch.device("cpu"))), 3))
        except Exception as exc:  # noqa: BLE001
            results.append(type(exc).__name__)
    td.destroy_process_group()
    out.put((rank, results))


def test_ranks_agree_on_a_failed_member_step_in_one_collective():
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_agree_worker, args=(r, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    assert got[0] == [1.5, "FailedOnAnotherRank"]  # the mean loss; then rank 1's failure reaches rank 0
    assert got[1] == [1.5, "RuntimeError"]


def test_a_cancelled_torchrun_run_is_cancelled_not_failed(tmp_path):
    run = prepare({"dataset": "mnist-lt", "method": "ce", "seed": 0}, tmp_path / "runs")
    run.write_status(status="running")
    run.cancel_file.touch()
    assert scheduler.finalize(run, 1)["status"] == "cancelled"  # torchrun exits 1 when its workers are stopped


def test_cancel_signals_the_group_of_every_rank(tmp_path):
    run = prepare({"dataset": "mnist-lt", "method": "ce", "seed": 0}, tmp_path / "runs")
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)", run.run_id]
    launcher = process.start(sleeper, tmp_path / "launcher.log")  # torchrun: its own session
    rank0 = process.start(sleeper, tmp_path / "rank0.log")  # a worker in a session of its own
    try:
        run.mark_running(pid=rank0.pid, host=socket.gethostname(), group_pid=launcher.pid)
        assert process.request_cancel(run) is None
        assert launcher.wait(timeout=30) == -signal.SIGTERM
        time.sleep(0.2)
        assert rank0.poll() is None  # torchrun, not cancel, stops its workers
    finally:
        for proc in (launcher, rank0):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# -- 11. make test never touches a GPU ---------------------------------------------------------------

def test_the_suite_hides_every_gpu():
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    out = subprocess.run([sys.executable, "-c", "import os; print(repr(os.environ['CUDA_VISIBLE_DEVICES']))"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "''"


# -- the cost table says when energy is device-wide ---------------------------------------------------------

def test_cost_table_names_runs_whose_gpu_was_shared(tmp_path):
    from .test_tables import build, finished

    shared = finished(tmp_path / "runs", method="ce")
    shared.write_status(gpu_shared=True, energy_kwh=0.1, avg_power_w=300.0)
    finished(tmp_path / "runs", method="focal").write_status(gpu_shared=False, energy_kwh=0.1)
    notes = build(tmp_path, "cost").notes
    assert any("device-wide for ce (tiny-clip)" in n and "focal" not in n for n in notes), notes
