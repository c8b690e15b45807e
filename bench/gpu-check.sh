#!/usr/bin/env bash
# First contact with a GPU machine (issue 29): checks for real what the test suite checks with a fake NVML,
# and writes one JSON report (`bench/gpu.sh` stays the benchmark).
#
#   bench/gpu-check.sh [OUT.json]          default: bench/results/gpu-check-<UTC time>.json
#   bench/gpu-check.sh --cpu [OUT.json]    a rehearsal on a machine without GPU (GPU-only checks skipped)
#
# Checks (tiny-clip on the embedded mnist-lt, plus one ViT-L/14 bench; nothing is downloaded):
#   versions      driver, the CUDA version it supports, torch and its CUDA build; torch can use the GPUs
#                 (else lvmbench's one-line refusal is recorded); every torch device's UUID found in NVML
#   energy        a short run: finished on cuda, its GPU by UUID in system.jsonl, energy and power measured
#   placement     two concurrent `lvmbench run`s train on two different GPUs (needs 2 GPUs)
#   fused=alone   ce in a fused group (ce,focal) against ce alone: bitwise, or the largest difference
#   resume        kill -9 during training, --resume: against the uninterrupted run, bitwise or the difference
#   reshape       a --nproc 2 run killed and resumed with --nproc 1 (fewer GPUs visible; needs 2 GPUs)
#   nproc2=1      --nproc 2 over NCCL against 1 process: largest loss and weight differences (needs 2 GPUs)
#   cancel        cancelling a --nproc 2 run the way the UI does ends it `cancelled` (needs 2 GPUs)
#   gpu-decode    data.decode=cuda: `bench --loader`'s GPU path against the CPU torchvision path on the same crops
#                 (mean <= 0.5, p99 <= 3 levels of 255) and its images/s; a 30-step tiny-clip run on generated
#                 JPEGs decoding on the GPU finishes (the rehearsal: the run is refused, one line, exit 2)
#   bench         `lvmbench bench --backbone ViT-L-14 --batch-size 256 --fused 8`: the cached-host path's
#                 step time, fused-8, every mode's time with synchronised timing and a TF32 reference
#
# Budget: under 10 minutes on one 8-GPU H100 node (each step has its own time limit; the bench gets
# what is left, at most 200 s). A failed check is recorded and the others still run.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
MODE=gpu
if [ "${1:-}" = "--cpu" ]; then MODE=cpu; shift; fi
OUT=${1:-bench/results/gpu-check-$(date -u +%Y%m%d-%H%M%S).json}
mkdir -p "$(dirname "$OUT")"
export HF_HUB_OFFLINE=1
exec "$PY" - "$OUT" "$MODE" <<'PYEOF'
import json, os, platform, signal, subprocess, sys, tempfile, time
from pathlib import Path

OUT, MODE = Path(sys.argv[1]), sys.argv[2]
START, BUDGET_S = time.monotonic(), 570 if MODE == "gpu" else 3600  # a rehearsal may share a busy CPU
SLOW = 1 if MODE == "gpu" else 5  # the rehearsal's time limits, per command
WORK = Path(tempfile.mkdtemp(prefix="lvmbench-gpu-check-"))
DEVICE = [] if MODE == "gpu" else ["--device", "cpu"]
ITERS = 300 if MODE == "gpu" else 12  # the rehearsal: about the test suite's budget


def budget(iters=ITERS, ckpt=True):
    return [f"train.iters={iters}", f"train.batch_size={64 if MODE == 'gpu' else 16}", f"train.eval_every={ITERS // 3}",
            f"train.warmup_iters={ITERS // 6}", f"train.log_every={ITERS // 30 or 1}"] + (
        [f"ckpt.every={ITERS // 6}"] if ckpt else [])


SETS = budget()
checks = []
report = {"mode": MODE, "checks": checks}


def lvmbench(*args, runs, timeout=180, env=None):
    timeout *= SLOW
    cmd = [sys.executable, "-m", "lvmbench", "run", "--headless", "--runs-dir", str(runs), "--results",
           str(runs / "r.duckdb"), *([] if "--resume" in args else DEVICE), *args]  # a resume keeps the run's device
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def start(*args, runs, nproc=1):
    cmd = [sys.executable, "-m", "lvmbench", "run", "--headless", "--runs-dir", str(runs), "--results",
           str(runs / "r.duckdb"), "--nproc", str(nproc), *DEVICE, *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def only_run(runs):
    found = [p for p in runs.iterdir() if (p / "spec.json").exists()]
    return found[0] if len(found) == 1 else None


def status(run):
    return json.loads((run / "status.json").read_text())


def weights(run):
    import torch

    return torch.load(run / "ckpt" / "model.pt", map_location="cpu", weights_only=True)


def compare(a, b):
    """'bitwise', or the largest absolute difference between two runs' final weights."""
    wa, wb = weights(a), weights(b)
    if wa.keys() != wb.keys():
        return {"same": False, "detail": "different parameters"}
    diff = max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)
    return {"same": diff == 0.0, "max_abs_diff": diff}


def losses(run):
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def check(name, needs_gpus=0):
    def wrap(fn):
        t0 = time.monotonic()
        left = BUDGET_S - (t0 - START)
        skip = ("out of time" if left < 30 else
                f"needs {needs_gpus} GPUs" if needs_gpus and gpu_count() < needs_gpus else None)
        if skip:
            checks.append({"name": name, "ok": None, "detail": f"skipped: {skip}"})
            print(f"{name:10s} skipped: {skip}", flush=True)
            return fn
        runs = WORK / name
        runs.mkdir()
        try:
            ok, detail = fn(runs)
        except Exception as exc:  # noqa: BLE001 - a failed check is recorded, the next one runs
            ok, detail = False, f"{type(exc).__name__}: {str(exc)[-600:]}"
        checks.append({"name": name, "ok": ok, "seconds": round(time.monotonic() - t0, 1), "detail": detail})
        print(f"{name:10s} {'ok' if ok else 'FAILED' if ok is False else 'skipped'}  {json.dumps(detail)[:300]}",
              flush=True)
        return fn
    return wrap


def gpu_count():
    if MODE != "gpu":
        return 0
    from lvmbench.runs import devices

    return len(devices.query().gpus)


@check("versions")
def _(runs):
    import torch

    from lvmbench.runs import devices
    from lvmbench.train import gpus
    from lvmbench.train.distributed import Dist

    machine = devices.query()
    detail = {"driver": machine.driver, "driver_cuda": machine.cuda, "torch": torch.__version__,
              "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
              "nvml_devices": [{"uuid": g.uuid, "name": g.name, "parent": g.parent} for g in machine.gpus],
              "refusal": gpus.refusal("auto", machine)}
    report["versions"] = detail
    if MODE != "gpu":
        return True, detail
    if detail["refusal"]:
        return False, detail
    os.environ["LOCAL_WORLD_SIZE"] = str(torch.cuda.device_count())
    try:
        mapped = gpus.run_uuids(Dist(), machine)
    finally:
        del os.environ["LOCAL_WORLD_SIZE"]
    detail["torch_to_nvml"] = mapped
    known = {g.uuid for g in machine.gpus}
    return bool(mapped) and all(u in known for u in mapped), detail


@check("energy")
def _(runs):
    out = lvmbench("--set", *SETS, runs=runs)
    run = only_run(runs)
    st = status(run)
    samples = [json.loads(line) for line in (run / "system.jsonl").read_text().splitlines()]
    detail = {k: st.get(k) for k in ("status", "device", "gpu_name", "gpu_uuids", "gpu_shared", "energy_kwh",
                                     "avg_power_w", "wall_s", "s_per_iter", "peak_mem_mib")}
    detail["sample"] = samples[-1] if samples else None
    detail["rc"] = out.returncode
    if MODE != "gpu":
        return st.get("status") == "finished" and st.get("device") == "cpu", detail
    return (st.get("status") == "finished" and str(st.get("device")).startswith("cuda")
            and st.get("energy_kwh") is not None and bool(st.get("gpu_uuids"))
            and all(s.get("gpu_uuid") in st["gpu_uuids"] for s in samples)), detail


@check("placement", needs_gpus=2)
def _(runs):
    procs = [start("--set", *SETS, "--seed", str(seed), runs=runs) for seed in (0, 1)]
    for p in procs:
        p.wait(timeout=240 * SLOW)
    uuids = [status(r).get("gpu_uuids") for r in runs.iterdir() if (r / "status.json").exists()]
    return len(uuids) == 2 and all(uuids) and uuids[0] != uuids[1], {"gpu_uuids": uuids}


@check("fused=alone")
def _(runs):
    lvmbench("--method", "ce", "--set", *SETS, runs=runs / "alone")
    lvmbench("--method", "ce,focal", "--set", *SETS, runs=runs / "fused")
    alone = only_run(runs / "alone")
    fused = next(p for p in (runs / "fused").iterdir() if json.loads((p / "spec.json").read_text())["method"] == "ce")
    result = compare(alone, fused)
    return result["same"], result


@check("resume")
def _(runs):
    lvmbench("--set", *SETS, runs=runs / "whole")
    proc = start("--set", *SETS, "--run-id", "killed", runs=runs / "killed")
    ckpt = runs / "killed" / "killed" / "ckpt" / "last.pt"
    deadline = time.monotonic() + 180 * SLOW
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the owner; its training child dies with it
    proc.wait()
    time.sleep(1)
    out = lvmbench("--resume", "killed", runs=runs / "killed")
    st = status(runs / "killed" / "killed")
    result = {"status": st.get("status"), "segments": st.get("segments"), "rc": out.returncode,
              **compare(only_run(runs / "whole"), runs / "killed" / "killed")}
    return st.get("status") == "finished" and (st.get("segments") or 1) > 1 and result["same"], result


@check("reshape", needs_gpus=2)
def _(runs):
    proc = start("--set", *SETS, "--run-id", "wide", runs=runs, nproc=2)
    ckpt = runs / "wide" / "ckpt" / "last.pt"
    deadline = time.monotonic() + 180 * SLOW
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2)
    out = lvmbench("--resume", "wide", "--nproc", "1", runs=runs)
    st = status(runs / "wide")
    return st.get("status") == "finished", {"status": st.get("status"), "error": st.get("error"), "rc": out.returncode}


@check("nproc2=1", needs_gpus=2)
def _(runs):
    lvmbench("--set", *SETS, runs=runs / "one")
    lvmbench("--nproc", "2", "--set", *SETS, runs=runs / "two", timeout=240)
    one, two = only_run(runs / "one"), only_run(runs / "two")
    la, lb = losses(one), losses(two)
    rel = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(la, lb)) if la and len(la) == len(lb) else None
    result = {"steps_logged": [len(la), len(lb)], "max_rel_loss_diff": rel, **compare(one, two)}
    return rel is not None and rel < 1e-3, result


@check("cancel", needs_gpus=2)
def _(runs):
    from lvmbench.runs import process
    from lvmbench.runs.rundir import RunDir

    proc = start("--set", *budget(5000, ckpt=False), "--run-id", "stop-me", runs=runs, nproc=2)
    run = RunDir(runs / "stop-me")
    deadline = time.monotonic() + 180 * SLOW
    while time.monotonic() < deadline and not (run.path / "metrics.jsonl").exists():
        time.sleep(0.2)
    refused = process.request_cancel(run)
    proc.wait(timeout=60 * SLOW)
    st = run.status()
    return st.get("status") == "cancelled", {"refused": refused, "status": st.get("status"), "error": st.get("error")}


# nvJPEG's IDCT and the GPU's resampling against libjpeg-turbo's and the CPU's, in levels of 255 (un-normalised).
GPU_DECODE_TOLERANCE = {"mean_abs_255": 0.5, "p99_abs_255": 3.0}


@check("gpu-decode")
def _(runs):
    """data.decode=cuda: `bench --loader` (the GPU path's output against the CPU torchvision path's on the same
    crops, its images/s) and a short training run on generated JPEGs (the rehearsal: its one-line refusal)."""
    cmd = [sys.executable, "-m", "lvmbench", "bench", "--loader", "--loader-images", "64", "--loader-rounds", "3",
           "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240 * SLOW)
    if out.returncode:
        return False, {"rc": out.returncode, "stderr": out.stderr[-2000:]}
    cuda = json.loads(out.stdout)["loader"]["cuda"]
    report["gpu_decode"] = cuda
    detail = {"cpu_ms_per_img": cuda["cpu_ms_per_img"], "gpu": cuda["gpu"], "gpu_img_s": cuda["gpu_img_s"]}
    from lvmbench.bench.loader import make_images

    split = make_images(runs, 48)
    (runs / "train.txt").write_text("".join(f"{name} {i % 4}\n" for i, name in enumerate(split.samples)))
    run = lvmbench("--dataset", "split-file", "--data-root", str(runs), "--set", *budget(30, ckpt=False),
                   "data.train_list=train.txt", "data.val_list=train.txt", "data.test_list=train.txt",
                   "data.decode=cuda", runs=runs / "runs")
    detail["run_rc"] = run.returncode
    if MODE != "gpu":
        detail["refusal"] = run.stderr.strip()[-300:]
        return cuda["gpu_img_s"] is None and run.returncode == 2 and "data.decode=cuda" in run.stderr, detail
    trained = only_run(runs / "runs")
    detail["run_status"] = status(trained).get("status") if trained else run.stderr[-600:]
    detail["worst"] = {k: max(d[k] for d in cuda["difference"]) for k in GPU_DECODE_TOLERANCE}
    detail["tolerance"] = GPU_DECODE_TOLERANCE
    within = all(detail["worst"][k] <= tol for k, tol in GPU_DECODE_TOLERANCE.items())
    return bool(cuda["gpu_img_s"]) and within and detail["run_status"] == "finished", detail


@check("bench")
def _(runs):
    left = int(BUDGET_S - (time.monotonic() - START)) - 10
    backbone, batch = ("ViT-L-14", "256") if MODE == "gpu" else ("tiny-clip", "8")
    limit = max(20, min(200 * SLOW, left))
    cmd = [sys.executable, "-m", "lvmbench", "bench", "--backbone", backbone, "--batch-size", batch, "--iters", "5",
           "--max-seconds", str(max(10, limit - 60)), "--fused", "8", "--json"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired as exc:
        return False, {"error": f"killed after {limit} s", "progress": (exc.stderr or b"")[-2000:].decode(errors="replace")}
    if out.returncode:
        return False, {"rc": out.returncode, "stderr": out.stderr[-2000:]}
    bench = json.loads(out.stdout)
    report["bench"] = bench
    modes = {m["name"]: m for m in bench["modes"]}
    summary = {name: {"s_per_iter": round(m["s_per_iter"], 4), "images_per_s": round(m["images_per_s"], 1)}
               for name, m in modes.items()}
    return "cached-host" in modes and "fused" in bench, {"modes": summary, "dropped": bench["dropped"],
                                                        "fused": bench.get("fused")}


report["seconds"] = round(time.monotonic() - START, 1)
report["host"] = platform.node()
OUT.write_text(json.dumps(report, indent=1, default=str))
failed = [c["name"] for c in checks if c["ok"] is False]
print(f"wrote {OUT} ({report['seconds']} s): {len(checks) - len(failed)} of {len(checks)} checks not failed"
      + (f"; failed: {', '.join(failed)}" if failed else ""))
sys.exit(1 if failed else 0)
PYEOF
