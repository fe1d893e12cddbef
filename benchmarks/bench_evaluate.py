"""Evaluation throughput from an on-disk cache vs the bare forward pass, measured in one run.

``evaluate()`` reads uint8 rows from the memory-mapped cache, moves them to the device
(pinned double buffer on CUDA), normalises there and scores. The bare forward pass gets the
same images already normalised on the device. Their ratio is what feeding costs; on a GPU
the absolute rate is compared with SPEC's targets (>= 24k images/s from disk on an H100 for
ViT-B/32 in bf16 weights). Runs alternate (bare, evaluate, bare, ...) and medians are printed.

    .venv/bin/python benchmarks/bench_evaluate.py                       # tiny ViT, CPU
    .venv/bin/python benchmarks/bench_evaluate.py --vitb32 --images 64  # ViT-B/32 shapes
    .venv/bin/python benchmarks/bench_evaluate.py --vitb32 --images 16384 --batch-size 1024 \\
        --precisions fp32 bf16_autocast bf16                            # on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from interpsharp.checkpoints import random_classifier
from interpsharp.classifier import CLIPClassifier, VitArchitecture
from interpsharp.data import load_cache, write_cache
from interpsharp.evaluate import PRECISIONS, evaluate, normalize_images, pick_device, prepare_model

TINY = VitArchitecture(image_size=32, patch_size=8, width=128, layers=4, head_width=64, mlp_ratio=4.0, embed_dim=64, num_classes=1000)



def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def bare_forward(model: CLIPClassifier, batches: list[torch.Tensor], precision: str, device: torch.device) -> None:
    """The model alone on device-resident, already normalised batches."""
    autocast = torch.autocast(device.type, torch.bfloat16) if precision == "bf16_autocast" else contextlib.nullcontext()
    with autocast:
        for x in batches:
            model(x).argmax(1)
    sync(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vitb32", action="store_true", help="ViT-B/32 shapes (224 px) instead of a tiny ViT")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16_autocast"], choices=list(PRECISIONS))
    args = parser.parse_args()

    device = pick_device(args.device)
    model = random_classifier("ViT-B-32-quickgelu") if args.vitb32 else CLIPClassifier(TINY).eval()
    fp32_state = {k: v.clone() for k, v in model.state_dict().items()}
    size = model.arch.image_size
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        images = rng.integers(0, 256, (args.images, 3, size, size), dtype=np.uint8)
        write_cache(Path(tmp) / "bench", images, rng.integers(0, 1000, args.images), [str(i) for i in range(1000)])
        cache = load_cache(Path(tmp) / "bench")
        print(f"device {device}, {'ViT-B/32' if args.vitb32 else 'tiny ViT'} {size}px, {args.images} images, "
              f"batch {args.batch_size}, torch threads {torch.get_num_threads()}")
        for precision in args.precisions:
            model.load_state_dict(fp32_state)
            model.float()
            prepare_model(model, device, precision)
            dtype = PRECISIONS[precision]
            resident = [normalize_images(torch.from_numpy(images[i:i + args.batch_size]).to(device), model.preprocess, dtype=dtype)
                        for i in range(0, args.images, args.batch_size)]
            bare_forward(model, resident[:1], precision, device)  # warm-up
            evaluate(model, cache, args.batch_size, device, precision, progress=False)
            bare_times, eval_times = [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                bare_forward(model, resident, precision, device)
                bare_times.append(time.perf_counter() - start)
                start = time.perf_counter()
                evaluate(model, cache, args.batch_size, device, precision, progress=False)
                eval_times.append(time.perf_counter() - start)
            bare, full = statistics.median(bare_times), statistics.median(eval_times)
            print(f"{precision:>14}: bare forward {args.images / bare:9.1f} img/s, evaluate() from disk cache "
                  f"{args.images / full:9.1f} img/s, evaluate/bare = {bare / full:.3f}")


if __name__ == "__main__":
    main()
