"""The frozen-encoder feature cache: shards, integrity checks and repair, and reuse by the trainer."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lvmbench import config
from lvmbench.data.base import Split
from lvmbench.models.backbone import Backbone
from lvmbench.runs.plan import prepare
from lvmbench.train import cache
from lvmbench.train.loop import Trainer, train_run

from .conftest import TINY
from .conftest import make_run

ROW = (3, 4)  # 12 bf16 values = 24 bytes a row


def values(rows) -> torch.Tensor:
    """What the fake encoder returns for ``rows``: row r is filled with r + 0.25 (exact in bf16)."""
    r = torch.as_tensor(list(rows), dtype=torch.float32)
    return (r + 0.25)[:, None, None].expand(-1, *ROW).clone()


class FakeEncoder:
    """Yields the features of the rows asked for, ``chunk`` rows at a time; records every call."""

    def __init__(self, chunk=4, fail_after=None, drop=0):
        self.calls, self.chunk, self.fail_after, self.drop = [], chunk, fail_after, drop

    def __call__(self, rows):
        self.calls.append(list(rows))
        rows = rows[:len(rows) - self.drop]
        for i in range(0, len(rows), self.chunk):
            if self.fail_after is not None and i >= self.fail_after:
                raise KeyboardInterrupt("killed mid-build")
            yield values(rows[i:i + self.chunk])


def entry(root, rows=10, **parts):
    # 3 rows of 24 bytes per shard: 10 rows make shards [0,3) [3,6) [6,9) [9,10)
    return cache.FeatureCache(root, {"split": "s", **parts}, rows, shard_bytes=72)


def test_build_then_reuse_without_encoding(tmp_path):
    enc = FakeEncoder()
    feats = entry(tmp_path).ensure(enc)
    assert enc.calls == [list(range(10))]
    assert len(feats) == 10 and len(feats.parts) == 4 and feats.row_shape == ROW
    assert torch.equal(feats.gather(torch.arange(10)).float(), values(range(10)))
    again = FakeEncoder()
    second = entry(tmp_path)
    feats = second.ensure(again)
    assert again.calls == [] and second.encoded_rows == 0
    manifest = json.loads(second.manifest_file.read_text())
    assert manifest["rows_per_shard"] == 3 and sorted(manifest["shards"]) == ["0", "1", "2", "3"]
    assert manifest["shards"]["3"]["bytes"] == 24


def test_gather_across_shards_any_order_with_repeats(tmp_path):
    feats = entry(tmp_path).ensure(FakeEncoder(chunk=7))
    rows = [9, 0, 4, 4, 2, 8]
    assert torch.equal(feats.gather(rows).float(), values(rows))
    batches = list(feats.batches(4))  # [0,4) spans shards 0-1, [8,10) spans 2-3
    assert [len(b) for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat(batches).float(), values(range(10)))
    whole = feats.to(torch.device("cpu"))  # what a GPU gets when the rows fit: one tensor
    assert len(whole.parts) == 1 and torch.equal(whole.gather(rows).float(), values(rows))
    assert not cache.fits_on(torch.device("cpu"), 1)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_a_damaged_shard_is_rebuilt_alone(tmp_path, damage):
    first = entry(tmp_path)
    first.ensure(FakeEncoder())
    shard = first.dir / "shard-00001.bin"
    if damage == "flip":  # same size, one byte changed: only the checksum can tell
        data = bytearray(shard.read_bytes())
        data[5] ^= 0xFF
        shard.write_bytes(bytes(data))
    elif damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:30])
    else:
        shard.unlink()
    enc = FakeEncoder()
    second = entry(tmp_path)
    feats = second.ensure(enc)
    assert enc.calls == [[3, 4, 5]] and second.encoded_rows == 3
    assert torch.equal(feats.gather(torch.arange(10)).float(), values(range(10)))


@pytest.fixture
def hashing(monkeypatch):
    """Files hashed in full by the cache, in order."""
    seen = []
    original = cache._sha256_file

    def counted(path, *args, **kwargs):
        seen.append(Path(path).name)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(cache, "_sha256_file", counted)
    return seen


def flip_in_place(shard, at=5):
    """One byte changed, size and modification time kept: what bit rot looks like to a cheap check."""
    st = shard.stat()
    data = bytearray(shard.read_bytes())
    data[at] ^= 0xFF
    shard.write_bytes(bytes(data))
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_opening_an_entry_hashes_nothing(tmp_path, hashing):
    entry(tmp_path).ensure(FakeEncoder())
    assert hashing == []  # hashed while written, not read back
    second = entry(tmp_path)
    feats = second.ensure(FakeEncoder())
    assert hashing == [] and second.encoded_rows == 0
    assert torch.equal(feats.gather(torch.arange(10)).float(), values(range(10)))


def test_a_rewritten_shard_is_hashed_on_open_and_its_time_remembered(tmp_path, hashing):
    first = entry(tmp_path)
    first.ensure(FakeEncoder())
    shard = first.dir / "shard-00002.bin"
    shard.write_bytes(shard.read_bytes())  # same bytes, new modification time
    enc = FakeEncoder()
    entry(tmp_path).ensure(enc)
    assert enc.calls == [] and hashing == ["shard-00002.bin"]
    entry(tmp_path).ensure(enc)
    assert hashing == ["shard-00002.bin"]  # the clean hash was recorded with the new time


def test_a_truncated_shard_is_caught_on_open_without_hashing(tmp_path, hashing):
    first = entry(tmp_path)
    first.ensure(FakeEncoder())
    shard = first.dir / "shard-00001.bin"
    st = shard.stat()
    with open(shard, "r+b") as f:
        f.truncate(30)
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    enc = FakeEncoder()
    feats = entry(tmp_path).ensure(enc)
    assert enc.calls == [[3, 4, 5]] and hashing == []
    assert torch.equal(feats.gather(torch.arange(10)).float(), values(range(10)))


def test_verify_catches_a_byte_flipped_in_place_and_the_next_open_repairs_it(tmp_path, hashing):
    first = entry(tmp_path)
    first.ensure(FakeEncoder())
    flip_in_place(first.dir / "shard-00001.bin")
    entry(tmp_path).ensure(FakeEncoder())
    assert hashing == []  # the cheap check cannot see it ...
    assert entry(tmp_path).verify() == [1]  # ... verify does, and drops the shard
    assert len(hashing) == 4 and not (first.dir / "shard-00001.bin").exists()
    enc = FakeEncoder()
    feats = entry(tmp_path).ensure(enc)
    assert enc.calls == [[3, 4, 5]]
    assert torch.equal(feats.gather(torch.arange(10)).float(), values(range(10)))
    assert entry(tmp_path).verify() == []


def test_a_read_that_looks_wrong_verifies_the_entry(tmp_path):
    first = entry(tmp_path)
    first.ensure(FakeEncoder())
    shard = first.dir / "shard-00001.bin"
    st = shard.stat()
    data = bytearray(shard.read_bytes())
    data[0:2] = torch.tensor([float("nan")], dtype=torch.bfloat16).view(torch.int16).numpy().tobytes()
    shard.write_bytes(bytes(data))
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    feats = entry(tmp_path).ensure(FakeEncoder())
    assert torch.equal(feats.gather([0, 9]).float(), values([0, 9]))  # finite rows: read as they are
    with pytest.raises(cache.CacheDamaged, match="shard\\(s\\) 1 failed their SHA-256 check"):
        feats.gather([2, 3])
    enc = FakeEncoder()
    entry(tmp_path).ensure(enc)
    assert enc.calls == [[3, 4, 5]]


def test_a_genuine_non_finite_value_is_read_after_one_verification(tmp_path, hashing):
    def encode(rows):
        x = values(rows)
        x[0, 0, 0] = float("inf")
        yield x

    feats = entry(tmp_path, rows=2).ensure(encode)
    assert torch.isinf(feats.gather([0, 1])).any() and torch.isinf(feats.gather([0])).any()
    assert hashing == ["shard-00000.bin"]


def test_cache_verify_command(tmp_path, capsys):
    from lvmbench import cli

    first = entry(tmp_path)
    first.ensure(FakeEncoder())
    other = entry(tmp_path, views=2)
    other.ensure(FakeEncoder())
    assert cli.main(["cache", "verify", "--cache-dir", str(tmp_path)]) == 0
    assert "verified 2 entries" in capsys.readouterr().out
    flip_in_place(first.dir / "shard-00003.bin", at=1)
    assert cli.main(["cache", "verify", "--cache-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{first.key}  10 rows  DAMAGED shard(s) 3" in out and f"{other.key}  10 rows  ok" in out
    assert cli.main(["cache", "verify", other.key, "--cache-dir", str(tmp_path)]) == 0
    assert cli.main(["cache", "verify", "nope", "--cache-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: no feature cache entry nope in {tmp_path}"


def test_a_corrupt_manifest_rebuilds_everything(tmp_path):
    first = entry(tmp_path)
    first.ensure(FakeEncoder())
    first.manifest_file.write_text("{not json")
    enc = FakeEncoder()
    feats = entry(tmp_path).ensure(enc)
    assert enc.calls == [list(range(10))]
    assert torch.equal(feats.gather(torch.arange(10)).float(), values(range(10)))


def test_an_interrupted_build_resumes_after_its_last_whole_shard(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        entry(tmp_path).ensure(FakeEncoder(chunk=4, fail_after=8))  # rows 0-7 arrived: shards 0 and 1 done
    assert not list((tmp_path / entry(tmp_path).key).glob("shard-00002*"))
    enc = FakeEncoder()
    feats = entry(tmp_path).ensure(enc)
    assert enc.calls == [[6, 7, 8, 9]]
    assert not list((tmp_path / entry(tmp_path).key).glob(".*.tmp"))
    assert torch.equal(feats.gather(torch.arange(10)).float(), values(range(10)))


def test_an_encoder_that_returns_too_few_rows_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="returned 9 rows for 10"):
        entry(tmp_path).ensure(FakeEncoder(drop=1))
    enc = FakeEncoder()
    entry(tmp_path).ensure(enc)
    assert enc.calls == [[9]]  # shards 0-2 were whole and are kept; the last one was never recorded


def test_the_key_changes_with_every_part_of_the_identity(tmp_path):
    keys = {entry(tmp_path).key, entry(tmp_path, views=2).key, entry(tmp_path, weights="other").key,
            entry(tmp_path, rows=11).key}
    assert len(keys) == 3  # the row count is checked against the manifest, not part of the key
    # the same identity is the same entry in another process (another hash seed) and in another key order
    code = ("import sys; from lvmbench.train import cache; "
            "print(cache.FeatureCache(sys.argv[1], {'weights': 'w', 'views': 2, 'split': 's'}, 10).key)")
    other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "12345"}).stdout.strip()
    assert other == entry(tmp_path, views=2, weights="w").key


def test_split_fingerprint_follows_the_content(tmp_path):
    images = np.zeros((4, 8, 8), np.uint8)
    a = cache.split_fingerprint(Split(images, np.arange(4)))
    assert cache.split_fingerprint(Split(images.copy(), np.array([3, 2, 1, 0]))) == a  # labels: same features
    images[2, 3, 3] = 1
    assert cache.split_fingerprint(Split(images, np.arange(4))) != a
    (tmp_path / "x.png").write_bytes(b"12345")
    files = Split(["x.png"], np.zeros(1, int), root=tmp_path)
    before = cache.split_fingerprint(files)
    (tmp_path / "x.png").write_bytes(b"123456")
    assert cache.split_fingerprint(files) != before


def test_views_map_to_rows_and_seeds():
    n = 5
    assert cache.row_items([0, 3], n, 1) == [0, 3]
    (i0, s0), (i1, s1), (i2, s2) = cache.row_items([0, 5, 7], n, 2)
    assert (i0, i1, i2) == (0, 0, 2)
    assert s0 == cache.VIEW_SEED and s1 == cache.VIEW_SEED + (1 << 32) and s2 == cache.VIEW_SEED + (1 << 32) + 2
    # a training sample's view is its augmentation seed modulo the number of views
    assert cache.train_rows([(1, 3), (2, 4), (4, 7)], n, 2).tolist() == [1 * 5 + 1, 0 * 5 + 2, 1 * 5 + 4]
    assert cache.train_rows([1, 2], n, 1).tolist() == [1, 2]


# -- the trainer ------------------------------------------------------------------------------------
@pytest.fixture
def encoder_calls(monkeypatch):
    """Images through the frozen tower, counted at Backbone.tokens and Backbone.pooled."""
    seen = {"tokens": 0, "pooled": 0}
    for name in seen:
        original = getattr(Backbone, name)

        def counted(self, images, _name=name, _original=original):
            seen[_name] += len(images)
            return _original(self, images)

        monkeypatch.setattr(Backbone, name, counted)
    return seen


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LVMBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_pool_tokens_is_encode_image(random_tiny_clip):
    backbone = Backbone("tiny-clip", random_tiny_clip)
    images = torch.randn(3, 3, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(backbone.pool_tokens(backbone.tokens(images)), backbone.pooled(images))


@pytest.mark.slow
def test_every_method_stage_and_seed_reuses_the_cache(tmp_path, fresh_cache, encoder_calls, random_tiny_clip):
    stage1 = make_run(tmp_path, "ce", random_tiny_clip, **{"cache.mode": "train"})
    assert train_run(stage1)["status"] == "finished"
    trainer = Trainer(stage1)
    n_train, n_val, n_test = (len(trainer.dataset.split(s)) for s in ("train", "val", "test"))
    assert encoder_calls == {"tokens": n_train + n_val + n_test, "pooled": 0}  # each image once, in total
    encoder_calls["tokens"] = 0
    seed1 = config.resolve("mnist-lt", "tiny-clip", "ce", seed=1, pretrained=random_tiny_clip,
                           overrides={**config.parse_sets(TINY), "cache.mode": "train"})
    others = [make_run(tmp_path, "focal", random_tiny_clip, **{"cache.mode": "train"}),
              prepare(seed1, tmp_path),
              make_run(tmp_path, "crt", random_tiny_clip, **{"cache.mode": "train", "stage1.run_id": stage1.run_id}),
              make_run(tmp_path, "zeroshot", random_tiny_clip)]  # pooled features from the cached tokens
    for run in others:
        assert train_run(run)["status"] == "finished", run.status().get("error")
    assert encoder_calls == {"tokens": 0, "pooled": 0}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cached_and_uncached_inputs_give_the_same_logits(tmp_path, fresh_cache, random_tiny_clip, precision):
    logits = {}
    for mode in ("off", "eval"):
        trainer = Trainer(make_run(tmp_path, "ce", random_tiny_clip,
                                   **{"cache.mode": mode, "encoder.precision": precision}))
        with torch.no_grad():
            logits[mode] = torch.cat([trainer.task.model(x) for x, _ in trainer.eval_inputs("val")])
    # bf16 weights: the tower already returns bf16, so storing it loses nothing; fp32: one bf16 rounding
    tol = dict(rtol=0, atol=0) if precision == "bf16" else dict(rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(logits["eval"], logits["off"], **tol)


def test_a_corrupt_shard_is_rebuilt_by_the_next_run(tmp_path, fresh_cache, encoder_calls, random_tiny_clip):
    run = make_run(tmp_path, "zeroshot", random_tiny_clip)
    first = Trainer(run).evaluate("val")
    n_val = encoder_calls["tokens"]
    (shard,) = fresh_cache.glob("*/shard-00000.bin")
    assert shard.stat().st_size == n_val * 50 * 64 * 2  # 50 tokens of width 64, bf16
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    second = Trainer(run).evaluate("val")
    assert encoder_calls["tokens"] == 2 * n_val
    assert second.to_dict() == first.to_dict()


def test_encoder_precision_resolves_per_device(monkeypatch):
    from lvmbench.train import encoder

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(encoder, "cpu_has_bf16", lambda: True)
    assert [encoder.resolve(s, cpu) for s in ("auto", "bf16", "fp32")] == ["bf16-weights", "bf16-weights", "fp32"]
    assert [encoder.resolve(s, gpu) for s in ("auto", "bf16", "fp32")] == ["bf16-autocast", "bf16-autocast", "fp32"]
    monkeypatch.setattr(encoder, "cpu_has_bf16", lambda: False)
    assert encoder.resolve("auto", cpu) == "fp32" and encoder.resolve("bf16", cpu) == "bf16-weights"
    assert encoder.model_input(torch.ones(2, dtype=torch.bfloat16)).dtype == torch.float32
