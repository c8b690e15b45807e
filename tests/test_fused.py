"""Fused training groups: one tower pass per step, each member bit-identical to training alone."""
import torch

from lvmbench import config, fused
from lvmbench.rundir import RunDir
from lvmbench.train.loop import train_group, train_run

from .conftest import TINY
from .test_engine import make_run, random_tiny_clip  # noqa: F401 - a fixture


def metrics_by_step(run: RunDir) -> dict:
    return {(m["step"], k): v for m in run.metrics() for k, v in m.items() if k not in ("step", "ts")}


def assert_same_run(a: RunDir, b: RunDir) -> None:
    """Same evaluations, per-class tables, logged metrics and final weights, bit for bit."""
    for split in ("val", "test"):
        assert a.evaluation(split) == b.evaluation(split)
        assert a.per_class(split) == b.per_class(split)
    assert metrics_by_step(a) == metrics_by_step(b)
    wa, wb = (torch.load(r.ckpt_dir / "model.pt", weights_only=True) for r in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.status()["best_step"] == b.status()["best_step"]


def alone_then_fused(tmp_path, ckpt, methods, between=lambda: None, **extra):
    alone = [make_run(tmp_path / "alone", m, ckpt, **extra) for m in methods]
    for run in alone:
        assert train_run(run)["status"] == "finished", run.status().get("error")
    between()
    group = [make_run(tmp_path / "fused", m, ckpt, **extra) for m in methods]
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
        return config.resolve("mnist-lt", "tiny-clip", method, overrides=config.parse_sets(
            TINY + [f"{k}={v}" for k, v in sets.items()]))

    specs = [spec("ce"), spec("focal", **{"train.lr": 0.1}), spec("crt", **{"stage1.run_id": "s1"}),
             spec("zeroshot"), spec("lws", **{"stage1.run_id": "s1"}), spec("ldam", **{"train.batch_size": 8}),
             spec("balanced_softmax"), spec("disalign", **{"stage1.run_id": "s1"})]
    # ldam: another batch size; crt/lws: class-balanced sampling, disalign: instance; zero-shot trains nothing
    assert fused.partition(specs) == [[0, 1, 6], [2, 4], [3], [5], [7]]
    assert fused.partition(specs, fuse=False) == [[i] for i in range(len(specs))]
