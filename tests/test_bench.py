"""``lvmbench bench``: its report, its whole-sweep arithmetic and its one-line errors."""
import json

import pytest

from lvmbench import cli
from lvmbench.bench import step as bench


def test_sweep_estimate_against_a_hand_count():
    # 15 methods read the frozen tower (the paper's 14 and its CE + class-balanced-sampling row); 14 train for 8192 steps of 256 images; every trained run
    # evaluates val (20,000) every 256 steps and test (50,000) once; zero-shot evaluates both once.
    est = bench.sweep_estimate({"reference": 2.0, "tower_step": 1.0, "cached": 0.5, "tower_fp32": 1.5,
                                "tower_bf16": 0.25})
    assert len(est["methods"]) == 15 and "cbs" in est["methods"] and "zeroshot" in est["methods"] and "full_finetune" not in est["methods"]
    steps = 14 * 8192 * 256
    evals = 14 * (32 * 20_000 + 50_000) + 70_000
    assert est["reference_encoder_passes"] == steps + evals == 39_090_128
    assert est["cache_eval_encoder_passes"] == steps + 70_000
    assert est["cache_train_encoder_passes"] == 115_846 + 70_000  # each image once, whatever the grid
    assert est["reference_hours"] == pytest.approx((steps * 2.0 + evals * 1.5) / 3600)
    assert est["cache_train_hours"] == pytest.approx((steps * 0.5 + 185_846 * 0.25) / 3600)
    assert est["one_cached_run_minutes"] == pytest.approx((185_846 * 0.25 + 8192 * 256 * 0.5) / 60)


@pytest.mark.slow
def test_bench_json_report(capsys):
    assert cli.main(["bench", "--backbone", "tiny-clip", "--batch-size", "4", "--iters", "2", "--threads", "1",
                     "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"backbone", "batch_size", "device", "modes", "sweep_estimate"} <= set(report)
    assert report["backbone"] == "tiny-clip" and report["batch_size"] == 4 and report["device"] == "cpu"
    modes = {m["name"]: m for m in report["modes"]}
    assert list(modes) == ["reference", "tower-bf16", "cached-fp32", "cached-bf16", "cached-host", "peft-lift"]
    assert report["dropped"] == {}
    assert modes["reference"]["speedup_vs_reference"] == 1.0
    for m in modes.values():
        assert m["s_per_iter"] > 0 and m["peak_mem_mib"] > 0 and m["iters"] == 2
        assert m["images_per_s"] == pytest.approx(4 / m["s_per_iter"])
        rounds = m["s_per_iter_by_round"]  # the speedup pairs steps of the same round
        ratios = sorted(modes["reference"]["s_per_iter_by_round"][k] / rounds[k] for k in rounds)
        assert m["speedup_vs_reference"] == pytest.approx(sum(ratios) / len(ratios))  # median of two = mean
    assert report["flops_per_image"]["tokens"] == [50, 64]  # 7x7 patches + class token, width 64
    flops = report["flops_per_image"]  # a LIFT step runs the tower forward and back through it
    assert 2 * flops["tower_forward_gflop"] < flops["peft_step_gflop"] < 4 * flops["tower_forward_gflop"]


@pytest.mark.parametrize("argv,message", [
    (["--backbone", "ViT-B-61"], "unknown backbone 'ViT-B-61' (did you mean ViT-B-16"),
    (["--iters", "0"], "--batch-size and --iters must be >= 1"),
])
def test_bench_user_errors_are_one_line(capsys, argv, message):
    assert cli.main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1


def test_fused_flops_bound_against_a_hand_count():
    # ViT-B/16 on a CPU: K=8 of (tower 17.6 + step 5) against one tower + 8 steps
    flops = {"tower_forward_gflop": 17.6, "decoder_step_gflop": 5.0}
    assert bench.fused_flops_bound(flops, 8) == pytest.approx(8 * 22.6 / (17.6 + 40))
    assert bench.fused_flops_bound(flops, 1) == pytest.approx(1.0)


def test_a_fused_step_runs_the_tower_once_for_k_decoders(monkeypatch):
    import torch

    from lvmbench.models.backbone import Backbone
    from lvmbench.train import cache, encoder

    calls = []
    original = Backbone.tokens
    monkeypatch.setattr(Backbone, "tokens", lambda self, x: calls.append(len(x)) or original(self, x))
    separate, fused = (m for m in bench.modes(torch.device("cpu"), fused=3) if m.decoders == 3)
    assert (separate.name, fused.name) == ("separate-3", "fused-3") and fused.shared_tower
    assert separate.encoder == fused.encoder == encoder.resolve("auto", torch.device("cpu"))
    tower = encoder.prepare(bench.random_backbone("tiny-clip"), fused.encoder)
    images = torch.randn(4, 3, tower.image_size, tower.image_size)
    cached = cache.CachedFeatures([torch.zeros(4, 50, 64, dtype=cache.STORE_DTYPE)], 4)
    for mode, passes in ((separate, 3), (fused, 1)):
        calls.clear()
        runner = bench.Runner(mode, tower, images, cached, torch.device("cpu"))
        before = [next(m.parameters()).detach().clone() for m in runner.models]
        runner.step()
        assert calls == [4] * passes and len(runner.models) == 3
        assert all(not torch.equal(b, next(m.parameters())) for b, m in zip(before, runner.models))


@pytest.mark.slow
def test_bench_fused_json_report(capsys):
    assert cli.main(["bench", "--backbone", "tiny-clip", "--batch-size", "4", "--iters", "2", "--threads", "1",
                     "--fused", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    modes = {m["name"]: m for m in report["modes"]}
    assert list(modes)[-2:] == ["separate-3", "fused-3"] and "reference" in modes  # next to today's modes
    fused = report["fused"]
    assert {"k", "separate_s_per_iter", "fused_s_per_iter", "ratio", "peak_mem_mib"} <= set(fused)
    assert fused["k"] == 3 and fused["fused_s_per_iter"] == modes["fused-3"]["s_per_iter"]
    assert fused["separate_s_per_iter"] == modes["separate-3"]["s_per_iter"]
    sep, fu = modes["separate-3"]["s_per_iter_by_round"], modes["fused-3"]["s_per_iter_by_round"]
    ratios = sorted(sep[k] / fu[k] for k in fu)
    assert fused["ratio"] == pytest.approx(sum(ratios) / len(ratios))  # median of two rounds = mean
    assert fused["peak_mem_mib"] == modes["fused-3"]["peak_mem_mib"] > 0
    assert modes["fused-3"]["images_per_s"] == pytest.approx(3 * 4 / fused["fused_s_per_iter"])  # member-images


def test_bench_fused_needs_two_decoders(capsys):
    assert cli.main(["bench", "--fused", "1"]) == 2
    assert capsys.readouterr().err == "error: --fused K needs K >= 2 decoders sharing one tower pass\n"


def test_the_reference_runs_fp32_matmuls_on_tf32_as_the_study_did(monkeypatch):
    """imblearn/nets/clip/clip.py of the study's code: ``torch.set_float32_matmul_precision('high')``."""
    import torch

    seen = {}
    monkeypatch.setattr(bench.Runner, "_step", lambda self: seen.setdefault(self.mode.name,
                                                                            torch.get_float32_matmul_precision()))
    cached = __import__("lvmbench.train.cache", fromlist=["CachedFeatures"]).CachedFeatures(
        [torch.zeros(4, 50, 64, dtype=torch.bfloat16)], 4)
    tower = bench.random_backbone("tiny-clip")
    images = torch.randn(2, 3, tower.image_size, tower.image_size)
    for mode in bench.modes(torch.device("cpu"))[:3]:
        bench.Runner(mode, tower, images, cached, torch.device("cpu")).step()
    assert seen == {"reference": "high", "tower-bf16": "highest", "cached-fp32": "highest"}
    assert torch.get_float32_matmul_precision() == "highest"


def test_an_out_of_memory_mode_is_dropped_and_progress_shows_with_json(monkeypatch, capsys):
    import torch

    step = bench.Runner.step

    def step_or_oom(self):
        if self.mode.name == "cached-fp32":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 61.00 GiB")
        step(self)

    monkeypatch.setattr(bench.Runner, "step", step_or_oom)
    assert cli.main(["bench", "--backbone", "tiny-clip", "--batch-size", "2", "--iters", "1", "--threads", "1",
                     "--json"]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert report["dropped"] == {"cached-fp32": "out of memory at warm-up"}
    assert "cached-fp32" not in {m["name"] for m in report["modes"]} and report["sweep_estimate"] is None
    assert "round 1: cached-host" in out.err  # the progress a killed bench leaves behind
