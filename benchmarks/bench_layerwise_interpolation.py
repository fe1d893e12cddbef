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
    .venv/bin/python benchmarks/bench_layerwise_interpolation.py --device cuda --precision bf16 --images-vitb32 1024
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from interpsharp.checkpoints import random_classifier
from interpsharp.classifier import CLIPClassifier, VitArchitecture
from interpsharp.data import EvalCache, load_cache, write_cache
from interpsharp.evaluate import PRECISIONS, evaluate_path, pick_device
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


def plain_loop(model: CLIPClassifier, path: InterpolationPath, caches: dict, alphas: list[float], batch_size: int,
               device: torch.device = torch.device("cpu"), precision: str = "fp32") -> pd.DataFrame:
    tables = [
        evaluate_path(model, path, caches, alphas, only=names, batch_size=batch_size, device=device,
                      precision=precision, progress=False)
        .assign(layer=layer)
        for layer, names in layer_groups(model).items()
    ]
    return pd.concat(tables, ignore_index=True)


def nearby_path(model: CLIPClassifier, device: torch.device) -> InterpolationPath:
    """``model``'s weights as theta_1 and a point 0.01 N(0, 1) away as theta_0, held on ``device``."""
    torch.manual_seed(0)
    theta_1 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    theta_0 = {k: v + 0.01 * torch.randn_like(v) for k, v in theta_1.items()}
    return InterpolationPath(theta_0, theta_1, device)


@dataclass(frozen=True)
class SweepPair:
    """One plain sweep and one cached sweep of the same points: seconds, and how their tables agree."""

    plain_s: float
    cached_s: float
    equal: bool
    max_abs_diff: float

    @property
    def speedup(self) -> float:
        return self.plain_s / self.cached_s


def sweep_pair(model: CLIPClassifier, path: InterpolationPath, caches: dict, alphas: list[float], batch_size: int,
               device: torch.device, precision: str = "fp32") -> SweepPair:
    """The plain loop, then ``layerwise_interpolation``, on the same caches and batches."""
    def timed(fn):
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out, time.perf_counter() - start

    expected, plain = timed(lambda: plain_loop(model, path, caches, alphas, batch_size, device, precision))
    got, cached = timed(lambda: layerwise_interpolation(model, path, caches, alphas, batch_size=batch_size, device=device,
                                                        precision=precision, progress=False))
    return SweepPair(plain, cached, got.equals(expected), float((got["value"] - expected["value"]).abs().max()))


def benchmark(name: str, model: CLIPClassifier, n_images: int, alphas: list[float], batch_size: int, repeats: int,
              device: torch.device, precision: str) -> None:
    path = nearby_path(model, device)
    print(f"\n== {name}: {len(layer_groups(model))} layers, {len(alphas)} alphas, {n_images} images, batch {batch_size}, "
          f"{precision}, {device}")
    with tempfile.TemporaryDirectory() as tmp:
        caches = {"bench": random_cache(Path(tmp) / "bench", model.arch, n_images)}
        totals = [0.0, 0.0]
        for r in range(repeats):
            pair = sweep_pair(model, path, caches, alphas, batch_size, device, precision)
            totals[0] += pair.plain_s
            totals[1] += pair.cached_s
            print(f"  run {r + 1}: plain loop {pair.plain_s:7.2f} s, cached {pair.cached_s:7.2f} s -> {pair.speedup:.2f}x; "
                  f"tables equal: {pair.equal} (max abs value diff {pair.max_abs_diff:.3g})")
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
    parser.add_argument("--device", default="cpu", help="e.g. cpu, cuda (default cpu)")
    parser.add_argument("--precision", default="fp32", choices=list(PRECISIONS), help="(default fp32)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    benchmark("demo-shaped ViT (random weights)", CLIPClassifier(DEMO_ARCH).eval(), args.images_demo, args.alphas,
              args.batch_size, args.repeats, device, args.precision)
    if not args.skip_vitb32:
        benchmark("ViT-B-32-quickgelu (random weights)", random_classifier("ViT-B-32-quickgelu"), args.images_vitb32,
                  args.alphas, args.batch_size, args.repeats, device, args.precision)


if __name__ == "__main__":
    main()
