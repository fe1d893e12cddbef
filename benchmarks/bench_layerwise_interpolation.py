"""Layer-wise interpolation sweep: prefix-cached library call vs the plain loop, measured in one run.

The plain loop is what the workflow ran before: per layer, ``evaluate_path(..., only=layer)``,
i.e. a whole forward pass over every image per (layer, alpha), with the whole model rewritten
per point. ``layerwise_interpolation`` runs one theta_0 pass per chunk, resumes each
(layer, alpha) where the layer is first read, shares the alpha-0 point and writes only the moved
layer. Both read the same on-disk cache with the same batches; their tables must be equal.

The machine is shared, so whole sweeps alternate (plain, cached, plain, ...) and every pair's
ratio is printed along with the total. FLOP floor of the cached sweep on ViT-B/32 shapes (stage
level): about half the plain loop's, less with the alpha-0 point shared.

    .venv/bin/python benchmarks/bench_layerwise_interpolation.py                 # demo-shaped ViT + ViT-B/32
    .venv/bin/python benchmarks/bench_layerwise_interpolation.py --images-vitb32 64 --alphas 0 0.25 0.5 0.75 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from interpsharp.checkpoints import random_classifier
from interpsharp.classifier import CLIPClassifier, VitArchitecture
from interpsharp.data import EvalCache, load_cache, write_cache
from interpsharp.evaluate import evaluate_path
from interpsharp.interpolate import InterpolationPath
from interpsharp.layers import layer_groups
from interpsharp.layerwise_interpolation import layerwise_interpolation

DEMO_ARCH = VitArchitecture(image_size=32, patch_size=8, width=128, layers=4, head_width=64, mlp_ratio=2.0, embed_dim=64, num_classes=10)


def random_cache(folder: Path, arch: VitArchitecture, n_images: int) -> EvalCache:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n_images, 3, arch.image_size, arch.image_size), dtype=np.uint8)
    labels = rng.integers(0, arch.num_classes, n_images)
    write_cache(folder, images, labels, [f"class {i}" for i in range(arch.num_classes)], meta={"name": "bench"})
    return load_cache(folder)


def plain_loop(model: CLIPClassifier, path: InterpolationPath, caches: dict, alphas: list[float], batch_size: int) -> pd.DataFrame:
    tables = [
        evaluate_path(model, path, caches, alphas, only=names, batch_size=batch_size, device="cpu", progress=False)
        .assign(layer=layer)
        for layer, names in layer_groups(model).items()
    ]
    return pd.concat(tables, ignore_index=True)


def benchmark(name: str, model: CLIPClassifier, n_images: int, alphas: list[float], batch_size: int, repeats: int) -> None:
    torch.manual_seed(0)
    theta_1 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    theta_0 = {k: v + 0.01 * torch.randn_like(v) for k, v in theta_1.items()}
    path = InterpolationPath(theta_0, theta_1)
    print(f"\n== {name}: {len(layer_groups(model))} layers, {len(alphas)} alphas, {n_images} images, batch {batch_size}")
    with tempfile.TemporaryDirectory() as tmp:
        caches = {"bench": random_cache(Path(tmp) / "bench", model.arch, n_images)}
        totals = [0.0, 0.0]
        for r in range(repeats):
            start = time.perf_counter()
            expected = plain_loop(model, path, caches, alphas, batch_size)
            plain = time.perf_counter() - start
            start = time.perf_counter()
            got = layerwise_interpolation(model, path, caches, alphas, batch_size=batch_size, device="cpu", progress=False)
            cached = time.perf_counter() - start
            totals[0] += plain
            totals[1] += cached
            diff = (got["value"] - expected["value"]).abs().max()
            print(f"  run {r + 1}: plain loop {plain:7.2f} s, cached {cached:7.2f} s -> {plain / cached:.2f}x; "
                  f"tables equal: {got.equals(expected)} (max abs value diff {diff:.3g})")
    print(f"  overall {totals[0] / totals[1]:.2f}x ({repeats} alternating runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-demo", type=int, default=1000, help="images for the demo-shaped ViT (default 1000)")
    parser.add_argument("--images-vitb32", type=int, default=16, help="224 px images for ViT-B/32 (default 16)")
    parser.add_argument("--skip-vitb32", action="store_true", help="only the demo-shaped model")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.5, 1.0], help="(default 0 0.5 1)")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    benchmark("demo-shaped ViT (random weights)", CLIPClassifier(DEMO_ARCH).eval(), args.images_demo, args.alphas,
              args.batch_size, args.repeats)
    if not args.skip_vitb32:
        benchmark("ViT-B-32-quickgelu (random weights)", random_classifier("ViT-B-32-quickgelu"), args.images_vitb32,
                  args.alphas, args.batch_size, args.repeats)


if __name__ == "__main__":
    main()
