"""Layer-wise sharpness sweep: prefix-cached vs the honest naive loop, measured in one run.

Both sweeps perturb every layer once at alpha = 1 (one draw, same seed, same precision, in
place, no model copies) and differ only in how much of the forward pass they rerun: the naive
loop (``FullForwardLoss``, the library's ``implementation="reference"``) runs the whole model
per layer; the cached one (``PrefixCachedLoss``) resumes at the first stage that reads the
layer, inside transformer blocks too. Each side is exactly what ``layerwise_sharpness`` does
per alpha: build its evaluator (one forward pass), then ``perturbed_losses`` per layer.

Colleagues share the CPU, so the two sides are interleaved *per layer* (alternating which goes
first): any slowdown hits both alike and the ratio stays meaningful. Wall-clock and process
CPU time are both reported. ``--full-sweeps`` also times whole ``layerwise_sharpness`` calls.
SPEC target on a 2-core CPU with ViT-B/32 shapes: >= 1.8x with exact agreement (FLOP floor of
exact prefix reuse ~0.55 of naive, a little lower with caching inside blocks).

    .venv/bin/python benchmarks/bench_layerwise.py                  # demo-shaped ViT + ViT-B/32
    .venv/bin/python benchmarks/bench_layerwise.py --demo ZS.pt FT.pt --images-vitb32 32
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import numpy as np
import torch

from interpsharp.checkpoints import load_classifier, random_classifier
from interpsharp.classifier import CLIPClassifier, VitArchitecture
from interpsharp.interpolate import InterpolationPath
from interpsharp.layers import layer_groups
from interpsharp.sharpness import (
    PRECISIONS,
    FullForwardLoss,
    PrefixCachedLoss,
    cross_entropy_criterion,
    layerwise_sharpness,
    perturbation_noise,
    perturbed_losses,
)

DEMO_ARCH = VitArchitecture(image_size=32, patch_size=8, width=128, layers=4, head_width=64, mlp_ratio=4.0, embed_dim=64, num_classes=10)
T = TypeVar("T")


@dataclass
class Case:
    name: str
    model: CLIPClassifier
    path: InterpolationPath
    images: torch.Tensor
    labels: torch.Tensor


@dataclass
class Clock:
    """Wall-clock and process CPU seconds spent in one variant."""

    wall: float = 0.0
    cpu: float = 0.0
    values: list[float] = field(default_factory=list)

    def run(self, fn: Callable[[], T], device: torch.device) -> T:
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        return out



def random_case(name: str, model: CLIPClassifier, n_images: int, device: torch.device) -> Case:
    """``model``'s weights as theta_1, theta_0 a nearby point, random normalised-looking images."""
    torch.manual_seed(0)
    arch = model.arch
    theta_1 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    theta_0 = {k: v + 0.01 * torch.randn_like(v) for k, v in theta_1.items()}
    images = torch.randn(n_images, 3, arch.image_size, arch.image_size)
    labels = torch.randint(0, arch.num_classes, (n_images,))
    return Case(name, model.to(device), InterpolationPath(theta_0, theta_1, device), images.to(device), labels.to(device))


def checkpoint_case(zeroshot: str, finetuned: str, n_images: int, device: torch.device) -> Case:
    """The demo world's own endpoints, on random images of its input size."""
    theta_0 = load_classifier(zeroshot).state_dict()
    model = load_classifier(finetuned)
    torch.manual_seed(0)
    size, classes = model.arch.image_size, model.arch.num_classes
    images = torch.randn(n_images, 3, size, size)
    labels = torch.randint(0, classes, (n_images,))
    path = InterpolationPath(theta_0, model.state_dict(), device)
    return Case(f"demo checkpoint {finetuned}", model.to(device), path, images.to(device), labels.to(device))


def interleaved_sweep(case: Case, precision: str) -> tuple[Clock, Clock]:
    """One draw per layer at alpha = 1, naive and cached interleaved layer by layer."""
    dtype = PRECISIONS[precision]
    model = case.model.to(dtype=dtype).eval()
    device = case.images.device
    batches = [(case.images.to(dtype), case.labels)]
    criterion = cross_entropy_criterion()
    groups = layer_groups(model)
    named = dict(model.named_parameters())
    case.path.load_into(model, 1.0)
    naive, cached = Clock(), Clock()
    naive_loss = naive.run(lambda: FullForwardLoss(model, batches, criterion), device)
    cached_loss = cached.run(lambda: PrefixCachedLoss(model, batches, criterion, groups), device)
    for i, (layer, names) in enumerate(groups.items()):
        params = [(n, named[n]) for n in names]
        scales = [p.detach().abs() for _, p in params]  # perturb_finetuned at alpha = 1, rho = 1
        sides = [(naive, naive_loss), (cached, cached_loss)]
        for clock, evaluator in sides if i % 2 == 0 else sides[::-1]:
            losses = clock.run(lambda: perturbed_losses(params, scales, 1, 0, False, lambda: evaluator.loss(layer)), device)
            clock.values.append(losses.item() - evaluator.baseline.item())
    return naive, cached


def full_sweep_seconds(case: Case, implementation: str, precision: str) -> tuple[float, np.ndarray]:
    """Seconds for one ``layerwise_sharpness`` call (one draw per layer) and its values."""
    clock = Clock()
    table = clock.run(lambda: layerwise_sharpness(
        case.model, case.path, [1.0], case.images, case.labels, rhos=[1.0], n_iter=1, seed=0,
        batch_size=len(case.labels), precision=precision, implementation=implementation, progress=False,
    ), case.images.device)
    return clock.wall, table.loc[table["metric"] == "layerwise_sharpness", "value"].to_numpy()


def noise_seconds(case: Case) -> float:
    """Time to draw one sweep's noise (every parameter once); both sides pay it."""
    start = time.perf_counter()
    for name, p in case.model.named_parameters():
        perturbation_noise(name, p.shape, 0, 0, p.device, p.dtype)
    return time.perf_counter() - start


def benchmark(case: Case, repeats: int, precision: str, full_sweeps: bool) -> None:
    n_layers = len(layer_groups(case.model))
    print(f"\n== {case.name}: {n_layers} layers, {len(case.labels)} images, {precision}, {case.images.device}")
    print(f"  noise for one sweep (paid by both): {noise_seconds(case):.3f} s")
    totals = [Clock(), Clock()]
    for r in range(repeats):
        naive, cached = interleaved_sweep(case, precision)
        diff = np.abs(np.array(cached.values) - np.array(naive.values))
        rel = diff / np.maximum(np.abs(naive.values), np.finfo(np.float64).tiny)
        print(
            f"  run {r + 1}: naive {naive.wall:7.2f} s wall / {naive.cpu:7.2f} s CPU, cached {cached.wall:7.2f} s / "
            f"{cached.cpu:7.2f} s -> speedup {naive.wall / cached.wall:.2f}x wall, {naive.cpu / cached.cpu:.2f}x CPU; "
            f"max abs diff {diff.max():.3g}, max rel diff {rel.max():.3g}"
        )
        for total, clock in zip(totals, (naive, cached)):
            total.wall += clock.wall
            total.cpu += clock.cpu
    naive, cached = totals
    print(f"  overall speedup {naive.wall / cached.wall:.2f}x wall, {naive.cpu / cached.cpu:.2f}x CPU ({repeats} interleaved runs)")
    if full_sweeps:
        t_naive, v_naive = full_sweep_seconds(case, "reference", precision)
        t_cached, v_cached = full_sweep_seconds(case, "prefix_cached", precision)
        print(f"  full layerwise_sharpness sweeps: reference {t_naive:.2f} s, prefix_cached {t_cached:.2f} s, "
              f"{t_naive / t_cached:.2f}x (not interleaved); identical values: {np.array_equal(v_naive, v_cached)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", nargs=2, metavar=("ZS", "FT"), help="demo-world checkpoints instead of the random demo-shaped ViT")
    parser.add_argument("--images-demo", type=int, default=256, help="images for the demo-shaped model (default 256)")
    parser.add_argument("--images-vitb32", type=int, default=16, help="224 px images for ViT-B/32 (default 16)")
    parser.add_argument("--skip-vitb32", action="store_true", help="only the demo-shaped model")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved sweeps per model (default 2)")
    parser.add_argument("--full-sweeps", action="store_true", help="also time whole layerwise_sharpness calls, one after the other")
    parser.add_argument("--precision", default="fp32", choices=list(PRECISIONS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    demo = (checkpoint_case(*args.demo, args.images_demo, device) if args.demo
            else random_case("demo-shaped ViT (random weights)", CLIPClassifier(DEMO_ARCH).eval(), args.images_demo, device))
    benchmark(demo, args.repeats, args.precision, args.full_sweeps)
    if not args.skip_vitb32:
        vitb32 = random_case("ViT-B-32-quickgelu (random weights)", random_classifier("ViT-B-32-quickgelu"), args.images_vitb32, device)
        benchmark(vitb32, args.repeats, args.precision, args.full_sweeps)


if __name__ == "__main__":
    main()
