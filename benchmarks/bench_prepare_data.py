"""Decode once vs decode every pass: cache building and cache reading rates in one run.

Writes an ImageNet-A-shaped tree (200 WordNet-ID folders) of ImageNet-sized JPEGs (500x375,
quality 90, smooth random content so they compress like photos), then measures

- ``build_cache`` with 1 decoding thread and with ``--workers`` threads (their ratio is the
  parallel speed-up; SPEC's anchor is ~230 images/s per core for decode + resize + crop);
- one evaluation pass's worth of reading the finished cache (memory map -> uint8 tensors, and
  also normalised on the CPU), which replaces the decode that model-soups repeats on every
  pass; the printed ratio read/decode is how much faster each later pass is fed.

    .venv/bin/python benchmarks/bench_prepare_data.py --per-class 2 --workers 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from interpsharp.data import load_cache
from interpsharp.datasets import build_cache
from interpsharp.classifier import Preprocess
from interpsharp.evaluate import normalize_images


def write_tree(root: Path, per_class: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    names = [f"n{x:08d}" for x in rng.choice(10**8, size=200, replace=False)]
    for name in names:
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            coarse = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
            image = Image.fromarray(coarse).resize((500, 375), Image.BICUBIC)
            image.save(root / name / f"img_{k}.JPEG", quality=90)
    return 200 * per_class


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=2, help="images per class folder")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "imagenet-a"
        n = write_tree(root, args.per_class)
        rates = {}
        for workers in sorted({1, args.workers}):
            start = time.perf_counter()
            out = build_cache("imagenet-a", root, Path(tmp) / f"cache{workers}", args.image_size, workers=workers, progress=False)
            rates[workers] = n / (time.perf_counter() - start)
        cache = load_cache(out)
        start = time.perf_counter()
        for _ in cache.batches(args.batch_size):
            pass
        read = n / (time.perf_counter() - start)
        start = time.perf_counter()
        for images, _ in cache.batches(args.batch_size):
            normalize_images(images, Preprocess())
        read_normalise = n / (time.perf_counter() - start)
    print(f"{n} JPEGs 500x375 -> {args.image_size}px")
    for workers, rate in rates.items():
        print(f"build_cache, {workers} thread(s): {rate:8.1f} images/s")
    if args.workers > 1:
        print(f"parallel speed-up {args.workers} threads / 1: {rates[args.workers] / rates[1]:.2f}x")
    print(f"cache read (uint8, what the CPU does per pass on CUDA): {read:8.1f} images/s = {read / rates[1]:.1f}x decode")
    print(f"cache read + normalise on the CPU: {read_normalise:8.1f} images/s = {read_normalise / rates[1]:.1f}x decode")


if __name__ == "__main__":
    main()
