"""The frozen-encoder feature cache: encode each image once, reuse it for every method, stage and seed.

The study keeps CLIP's image tower frozen (Wang et al. 2023, Sec. 3), so what the decoder reads
for an image never changes; its reference code still recomputes it at every step, for every method.
Here the encoder's outputs for one split are stored as memory-mapped bf16 shards under
``paths.cache_dir()/<key>/`` with a ``manifest.json``. The key is a content hash of the split's
samples, the backbone, its weights, the transform, the number of views, the stored feature and the
encoder's precision: change any of them and a new entry is built; nothing stale is ever read.

Safety: a shard is written to a temporary file, fsynced and renamed, then recorded in the manifest
with its size, modification time and SHA-256 (hashed while it is written). Opening an entry is cheap:
each shard's size and modification time are checked against the record, and only a shard whose
time changed is hashed again; a missing, partial or rewritten shard is encoded again (that shard
only), so an interrupted build resumes where it stopped. What a cheap check cannot see (a byte that
flipped in place) is caught by :meth:`FeatureCache.verify` -- ``lvmbench cache verify``, or
automatically when a read looks wrong (a non-finite value): a shard that fails its SHA-256 is
dropped and the reading run stops, so a damaged shard is never used silently. A lock file
serialises the runs that build the same entry.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import queue
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from ..runs.rundir import atomic_write_json

FORMAT = 1  # bump when what Backbone.tokens/pooled return or the shard layout changes
STORE_DTYPE = torch.bfloat16
SHARD_BYTES = 256 * 2**20
VIEW_SEED = 0x5EED << 40  # augmented view v of image i is drawn from seed VIEW_SEED + (v << 32) + i


# -- what a key is made of -------------------------------------------------------------------------
def _sha256_file(path: Path, chunk: int = 8 * 2**20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def split_fingerprint(split) -> str:
    """A hash of a split's samples in order: the pixels of an in-memory split, else each file's
    relative path, size and modification time (cheap to recompute; labels do not change features)."""
    h = hashlib.sha256()
    if isinstance(split.samples, np.ndarray):
        arr = np.ascontiguousarray(split.samples)
        h.update(f"array {arr.dtype} {arr.shape}\n".encode())
        h.update(arr.data)
        return h.hexdigest()
    for i, item in enumerate(split.samples):
        try:
            st = split.path(i).stat()
            h.update(f"{item}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{item}\0missing\n".encode())
    return h.hexdigest()


def weights_fingerprint(weights: str) -> str:
    """A checkpoint file by its content; an open_clip pretrained tag by its name."""
    path = Path(weights)
    return f"sha256:{_sha256_file(path)}" if path.is_file() else f"tag:{weights}"


def cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


# -- rows and views --------------------------------------------------------------------------------
def row_items(rows: Iterable[int], n: int, views: int) -> list:
    """The ImageDataset items that produce ``rows``: row ``v * n + i`` is view ``v`` of image ``i``.

    One view is the deterministic test transform (plain indices); K > 1 views are augmented, each
    from its own fixed seed, the same for every run that shares the entry.
    """
    if views == 1:
        return [int(r) for r in rows]
    return [(int(r) % n, VIEW_SEED + ((int(r) // n) << 32) + int(r) % n) for r in rows]


def train_rows(items: list, n: int, views: int) -> np.ndarray:
    """The cached rows of a training batch: each sample's view is its augmentation seed modulo ``views``.

    ``items`` are what the step sampler yields: indices, or ``(index, seed)`` pairs.
    """
    if items and isinstance(items[0], tuple):
        index = np.array([i for i, _ in items], dtype=np.int64)
        view = np.array([s % views for _, s in items], dtype=np.int64)
    else:
        index = np.asarray(items, dtype=np.int64)
        view = np.zeros_like(index)
    return view * n + index


class CacheDamaged(RuntimeError):
    """A shard of an open entry failed its SHA-256 check while being read."""


# -- reading ---------------------------------------------------------------------------------------
class CachedFeatures:
    """The rows of one cache entry: consecutive shards (memory maps or device tensors), one dtype."""

    def __init__(self, parts: list[torch.Tensor], rows_per_shard: int,
                 on_suspect: Callable[[], None] | None = None):
        self.parts, self.rows_per_shard = parts, rows_per_shard
        self.rows = sum(len(p) for p in parts)
        self.on_suspect = on_suspect  # called once when a read looks wrong; raises if the data is damaged

    def check(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (rows read from this entry, on any device) as read; a non-finite value (what a damaged
        bf16 shard tends to show) verifies the entry first. Once verified, what it holds is what the
        encoder wrote: later reads are trusted."""
        if self.on_suspect is not None and not bool(torch.isfinite(x).all()):
            check, self.on_suspect = self.on_suspect, None
            check()
        return x

    def __len__(self) -> int:
        return self.rows

    @property
    def row_shape(self) -> tuple[int, ...]:
        return tuple(self.parts[0].shape[1:])

    @property
    def nbytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.parts)

    def gather(self, rows, check: bool = True) -> torch.Tensor:
        """The rows ``rows`` (any order, repeats allowed) as one tensor; ``check=False``: the caller
        checks them (:meth:`check`) where that is cheaper, e.g. on the GPU after the copy."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        checked = self.check if check else (lambda x: x)
        if len(self.parts) == 1:
            return checked(self.parts[0][rows.to(self.parts[0].device)])
        shard, local = rows // self.rows_per_shard, rows % self.rows_per_shard
        out = torch.empty((len(rows), *self.row_shape), dtype=self.parts[0].dtype)
        for s in shard.unique().tolist():
            where = shard == s
            out[where] = self.parts[s][local[where]]
        return checked(out)

    def batches(self, size: int) -> Iterator[torch.Tensor]:
        """Consecutive rows, ``size`` at a time (views of the shards where a batch fits in one)."""
        for start in range(0, self.rows, size):
            stop = min(start + size, self.rows)
            s0, s1 = start // self.rows_per_shard, (stop - 1) // self.rows_per_shard
            if s0 == s1 or len(self.parts) == 1:
                part = self.parts[0] if len(self.parts) == 1 else self.parts[s0]
                offset = 0 if len(self.parts) == 1 else s0 * self.rows_per_shard
                yield self.check(part[start - offset:stop - offset])
            else:
                yield self.gather(torch.arange(start, stop))

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor], size: int = 1024) -> "CachedFeatures":
        """A new, in-memory entry with ``fn`` applied to every batch (e.g. pooling cached tokens)."""
        out = torch.cat([fn(b) for b in self.batches(size)])
        return CachedFeatures([out], max(len(out), 1))

    def to(self, device: torch.device) -> "CachedFeatures":
        """All rows in one tensor on ``device`` (for a GPU: when they fit; see :func:`fits_on`)."""
        whole = torch.empty((self.rows, *self.row_shape), dtype=self.parts[0].dtype, device=device)
        start = 0
        for part in self.parts:  # shard by shard: never two copies of the whole on the device
            whole[start:start + len(part)].copy_(self.check(part))
            start += len(part)
        return CachedFeatures([whole], max(self.rows, 1))


def prefetch(items: Iterable, depth: int = 2) -> Iterator:
    """``items`` in order, computed by a thread up to ``depth`` ahead of the consumer; an error the
    thread meets is raised here, at the item where it happened."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop, end = threading.Event(), object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put((end, exc))

    threading.Thread(target=work, daemon=True, name="lvmbench-prefetch").start()
    try:
        while True:
            item, exc = ready.get()
            if exc is not None:
                raise exc
            if item is end:
                return
            yield item
    finally:
        stop.set()


def stream(feats: CachedFeatures, batches: Iterable, device: torch.device) -> Iterator[tuple[torch.Tensor, Any]]:
    """``(rows on device, rows)`` for each array of row numbers in ``batches``, in order. Rows kept in
    host memory (a memory map: an entry larger than its GPU share, :func:`fits_on`) are gathered a
    thread ahead (:func:`prefetch`); bound for a GPU they are gathered into pinned memory, copied
    asynchronously and checked for finiteness there, after the copy, instead of on the CPU."""
    host, to_gpu = feats.parts[0].device.type == "cpu", device.type == "cuda"

    def read(rows):
        x = feats.gather(rows, check=not (host and to_gpu))
        return (x.pin_memory() if host and to_gpu else x), rows

    source = prefetch(map(read, batches)) if host else map(read, batches)
    for x, rows in source:
        x = to_device(x, device)
        yield (feats.check(x) if host and to_gpu else x), rows


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device``, asynchronously where it can be (from pinned memory to a GPU)."""
    return x.to(device, non_blocking=True)


def fits_on(device: torch.device, nbytes: int, share: float = 0.5) -> bool:
    """Whether ``nbytes`` of cached features may stay on a GPU: at most ``share`` of its free memory."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= share * free


# -- one entry: build, check, repair ---------------------------------------------------------------
class FeatureCache:
    """One entry of the cache: the features of ``rows`` rows under the identity ``parts``."""

    def __init__(self, root: Path, parts: dict, rows: int, shard_bytes: int = SHARD_BYTES):
        self.parts = {"format": FORMAT, "dtype": str(STORE_DTYPE).removeprefix("torch."), **parts}
        self.key = cache_key(self.parts)
        self.root, self.rows, self.shard_bytes = Path(root), rows, shard_bytes
        self.dir = self.root / self.key
        self.encoded_rows = 0  # rows the last ensure() had to encode (0: everything reused)

    @classmethod
    def entries(cls, root: Path) -> Iterator["FeatureCache"]:
        """Every entry under ``root`` that has a readable manifest, in key order."""
        for manifest_file in sorted(Path(root).glob("*/manifest.json")):
            try:
                found = json.loads(manifest_file.read_text())
                entry = cls(root, found["parts"], int(found["rows"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if entry.key == manifest_file.parent.name:
                yield entry

    @property
    def manifest_file(self) -> Path:
        return self.dir / "manifest.json"

    @contextmanager
    def _locked(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{self.key}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _manifest(self) -> dict:
        fresh = {"key": self.key, "parts": self.parts, "rows": self.rows, "row_shape": None,
                 "rows_per_shard": None, "shards": {}}
        try:
            found = json.loads(self.manifest_file.read_text())
        except (OSError, ValueError):
            return fresh
        same = (found.get("parts") == self.parts and found.get("rows") == self.rows
                and isinstance(found.get("shards"), dict))
        return found if same else fresh

    def _n_shards(self, manifest: dict) -> int:
        rps = manifest["rows_per_shard"]
        return -(-self.rows // rps) if rps else 0

    def _range(self, manifest: dict, shard: int) -> range:
        rps = manifest["rows_per_shard"]
        return range(shard * rps, min((shard + 1) * rps, self.rows))

    def _stat(self, manifest: dict, shard: int):
        """The shard's record and file status when its size is the expected one, else None."""
        record = manifest["shards"].get(str(shard))
        if not record:
            return None
        row_bytes = int(np.prod(manifest["row_shape"])) * STORE_DTYPE.itemsize
        expected = len(self._range(manifest, shard)) * row_bytes
        try:
            st = (self.dir / record["file"]).stat()
        except OSError:
            return None
        return (record, st) if record.get("bytes") == expected == st.st_size else None

    def _hash_ok(self, manifest: dict, shard: int, st) -> bool:
        """The shard's content matches its recorded SHA-256; the check is remembered with the file's time."""
        record = manifest["shards"][str(shard)]
        if _sha256_file(self.dir / record["file"]) != record.get("sha256"):
            return False
        record["mtime_ns"] = st.st_mtime_ns
        return True

    def _intact(self, manifest: dict, shard: int) -> bool:
        """The cheap check on open: exactly the recorded size and modification time; a shard whose
        time changed (or was never recorded) is hashed in full (never trust a name)."""
        found = self._stat(manifest, shard)
        if found is None:
            return False
        record, st = found
        return record.get("mtime_ns") == st.st_mtime_ns or self._hash_ok(manifest, shard, st)

    def verify(self) -> list[int]:
        """Hash every shard of the entry in full; drop the damaged ones (file and record) so that the
        next :meth:`ensure` encodes them again, and return their numbers."""
        with self._locked():
            manifest = self._manifest()
            if manifest["rows_per_shard"] is None:
                return []
            damaged = []
            for s in range(self._n_shards(manifest)):
                found = self._stat(manifest, s)
                if found is None or not self._hash_ok(manifest, s, found[1]):
                    damaged.append(s)
                    record = manifest["shards"].pop(str(s), None)
                    if record:
                        (self.dir / record["file"]).unlink(missing_ok=True)
            atomic_write_json(self.manifest_file, manifest)
            return damaged

    def _verify_on_read(self) -> None:
        damaged = self.verify()
        if damaged:
            raise CacheDamaged(f"feature cache {self.key}: shard(s) {', '.join(map(str, damaged))} failed their "
                               "SHA-256 check and were dropped; the next run (or --resume) encodes them again")

    def ensure(self, encode: Callable[[list[int]], Iterator[torch.Tensor]]) -> CachedFeatures:
        """Open the entry, first encoding whatever rows are missing or fail the cheap integrity check.

        ``encode(rows)`` yields the features of ``rows`` in order, in batches of any size.
        """
        if self.rows == 0:
            raise ValueError("an empty split has nothing to cache")
        with self._locked():
            manifest = self._manifest()
            known = json.dumps(manifest["shards"], sort_keys=True)
            bad = [s for s in range(self._n_shards(manifest)) if not self._intact(manifest, s)]
            if json.dumps(manifest["shards"], sort_keys=True) != known:
                atomic_write_json(self.manifest_file, manifest)  # the times of shards that hashed clean
            if manifest["rows_per_shard"] is None:
                missing = list(range(self.rows))
            else:
                missing = [r for s in bad for r in self._range(manifest, s)]
            self.encoded_rows = len(missing)
            if missing:
                self._build(manifest, missing, encode)
            return self._open(manifest)

    def _build(self, manifest: dict, rows: list[int], encode) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob(".shard-*.tmp"):  # left by a build that died (we hold the lock)
            stale.unlink(missing_ok=True)
        done, writer = 0, None
        for chunk in encode(rows):
            chunk = chunk.detach().to("cpu", STORE_DTYPE).contiguous()
            if manifest["rows_per_shard"] is None:
                manifest["row_shape"] = list(chunk.shape[1:])
                row_bytes = chunk[0].numel() * STORE_DTYPE.itemsize
                manifest["rows_per_shard"] = max(1, self.shard_bytes // row_bytes)
            if list(chunk.shape[1:]) != manifest["row_shape"]:
                raise RuntimeError(f"feature cache {self.key}: rows of shape {list(chunk.shape[1:])}, "
                                   f"expected {manifest['row_shape']}")
            while len(chunk):
                if writer is None:
                    shard = rows[done] // manifest["rows_per_shard"]
                    writer = _ShardWriter(self.dir, shard, len(self._range(manifest, shard)))
                take = min(len(chunk), writer.remaining)
                writer.write(chunk[:take])
                chunk, done = chunk[take:], done + take
                if writer.remaining == 0:
                    manifest["shards"][str(writer.shard)] = writer.close()
                    atomic_write_json(self.manifest_file, manifest)
                    writer = None
        if writer is not None or done != len(rows):
            raise RuntimeError(f"feature cache {self.key}: the encoder returned {done} rows for {len(rows)}")

    def _open(self, manifest: dict) -> CachedFeatures:
        shape = tuple(manifest["row_shape"])
        parts = []
        for s in range(self._n_shards(manifest)):
            n = len(self._range(manifest, s))
            parts.append(memmap_rows(self.dir / manifest["shards"][str(s)]["file"], n, shape))
        return CachedFeatures(parts, manifest["rows_per_shard"], on_suspect=self._verify_on_read)


def memmap_rows(path: Path, rows: int, shape: tuple) -> torch.Tensor:
    """``rows`` stored rows of ``shape`` in the file ``path``, memory-mapped (copy on write) as a tensor."""
    return torch.from_numpy(np.memmap(path, dtype=np.int16, mode="c", shape=(rows, *shape))).view(STORE_DTYPE)


class _ShardWriter:
    """One shard file being written: temporary name, running SHA-256, fsync and rename on close."""

    def __init__(self, folder: Path, shard: int, rows: int):
        self.shard, self.remaining = shard, rows
        self.name = f"shard-{shard:05d}.bin"
        self.final = folder / self.name
        self.tmp = folder / f".{self.name}.{os.getpid()}.tmp"
        self.file = open(self.tmp, "wb")
        self.hash, self.bytes = hashlib.sha256(), 0

    def write(self, rows: torch.Tensor) -> None:
        data = rows.view(torch.int16).numpy().data
        self.file.write(data)
        self.hash.update(data)
        self.bytes += data.nbytes
        self.remaining -= len(rows)

    def close(self) -> dict:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.final)
        return {"file": self.name, "bytes": self.bytes, "sha256": self.hash.hexdigest(),
                "mtime_ns": self.final.stat().st_mtime_ns}
