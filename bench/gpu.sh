#!/usr/bin/env bash
# GPU figures for BENCHMARKS.md: `lvmbench bench` (every mode, and --fused 8: eight decoders on one
# tower pass against eight separate steps) for ViT-B/16 and ViT-L/14 at batch 256 on one
# CUDA GPU (random weights, synthetic inputs: no data, no download), written to one JSON file with
# the GPU's name and the library versions; then `lvmbench bench --loader`: images/s per CPU core of
# the PIL and the fast (torchvision) decode path, with the machine's loader workers, against what
# the GPU's tower takes by FLOPs, and the GPU decode path's (data.decode=cuda) images/s on the GPU.
#
#   bench/gpu.sh [OUT.json]        default: bench/results/gpu-<UTC time>.json
#
# Budget: under 8 minutes on one H200. Each bench stops starting steps after --max-seconds and is
# killed by `timeout` well before the budget; a backbone that fails is recorded as an error and the
# other one still runs.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${1:-bench/results/gpu-$(date -u +%Y%m%d-%H%M%S).json}
mkdir -p "$(dirname "$OUT")"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this script measures a GPU')" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

# backbone  max-seconds  hard limit (s)
for spec in "ViT-B-16 75 150" "ViT-L-14 120 210"; do
    set -- $spec
    echo "== $1, batch 256" >&2
    timeout "$3" "$PY" -m lvmbench bench --backbone "$1" --batch-size 256 --iters 10 --max-seconds "$2" \
        --compile --fused 8 --json >"$TMP/$1.json" 2>"$TMP/$1.err"
    echo "$?" >"$TMP/$1.rc"
    tail -n 3 "$TMP/$1.err" >&2
done

echo "== loader" >&2
timeout 240 "$PY" -m lvmbench bench --loader --json >"$TMP/loader.json" 2>"$TMP/loader.err"
echo "$?" >"$TMP/loader.rc"

"$PY" - "$OUT" "$TMP" <<'PYEOF'
import json, pathlib, platform, subprocess, sys
from importlib import metadata

import torch

out, tmp = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
PAPER_IMAGES_PER_S = 259  # Wang et al. 2023, Table 8: ViT-L/14 decoder, RTX 4090

def version(pkg):
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None

def git_sha():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return None

runs = []
for name in ("ViT-B-16", "ViT-L-14"):
    rc = int((tmp / f"{name}.rc").read_text())
    try:
        report = json.loads((tmp / f"{name}.json").read_text())
    except ValueError:
        err = (tmp / f"{name}.err").read_text().strip().splitlines()
        report = {"backbone": name, "error": f"exit {rc}: {err[-1] if err else 'no output'}"}
    runs.append(report)

try:
    loader = json.loads((tmp / "loader.json").read_text())
except ValueError:
    err = (tmp / "loader.err").read_text().strip().splitlines()
    loader = {"error": f"exit {(tmp / 'loader.rc').read_text().strip()}: {err[-1] if err else 'no output'}"}

result = {
    "gpu": torch.cuda.get_device_name(0), "gpu_count": torch.cuda.device_count(),
    "versions": {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                 "open_clip_torch": version("open_clip_torch"), "timm": version("timm"),
                 "lvmbench": version("lvmbench"), "git": git_sha(), "python": platform.python_version()},
    "command": "bench/gpu.sh", "runs": runs, "loader": loader,
}
out.write_text(json.dumps(result, indent=1))
print(f"wrote {out}")
for r in runs:
    if "error" in r:
        print(f"{r['backbone']}: {r['error']}")
        continue
    for m in r["modes"]:
        print(f"{r['backbone']:9s} {m['name']:15s} {m['s_per_iter']:8.3f} s/iter {m['images_per_s']:9.1f} img/s "
              f"{m['peak_mem_mib']:9.0f} MiB {m['speedup_vs_reference']:6.1f}x")
    if "fused" in r:
        fu = r["fused"]
        print(f"{r['backbone']:9s} fused {fu['k']}: {fu['separate_s_per_iter']:.3f} s separate, "
              f"{fu['fused_s_per_iter']:.3f} s fused = {fu['ratio']:.2f}x (FLOPs bound {fu['flops_bound']:.2f}x), "
              f"peak {fu['peak_mem_mib']:.0f} MiB")
    if r["backbone"] == "ViT-L-14":
        best = max(m["images_per_s"] for m in r["modes"] if m["name"].startswith("cached"))
        print(f"target: cached ViT-L/14 training {best:.0f} img/s = {best / PAPER_IMAGES_PER_S:.1f}x the paper's "
              f"{PAPER_IMAGES_PER_S} (goal >= 5x); one ImageNet-LT run with encoding "
              f"{r['sweep_estimate']['one_cached_run_minutes']:.1f} min (goal < 15)")
if "error" in loader:
    print(f"loader: {loader['error']}")
else:
    lo = loader["loader"]
    print(f"loader: PIL {lo['pil_img_s_per_core']:.0f}, fast {lo['fast_img_s_per_core']:.0f} img/s per core "
          f"({lo['ratio']:.2f}x; {lo['ratio_float_on_cpu']:.2f}x with the float steps on the CPU), "
          f"{lo['measured_workers']} workers, load average {loader['load_avg'][0]:.2f}")
    cuda = lo["cuda"]
    print(f"  ceiling of a CPU path {lo['ceiling_ratio']:.2f}x; GPU path (data.decode=cuda): CPU side "
          f"{cuda['cpu_ms_per_img']:.3f} ms/img, GPU decode + transform "
          + (f"{cuda['gpu_img_s']:.0f} img/s" if cuda["gpu_img_s"] else "not measured"))
    for t in loader["towers"]:
        print(f"  {t['backbone']:9s} tower {t['tower_img_s']:7.0f} img/s by FLOPs; loader PIL {t['pil_loader_img_s']:6.0f} "
              f"({t['pil_bound']} bound, {t['pil_cores_needed']} cores needed), fast {t['fast_loader_img_s']:6.0f} "
              f"({t['fast_bound']} bound, {t['fast_cores_needed']} cores needed)")
PYEOF
