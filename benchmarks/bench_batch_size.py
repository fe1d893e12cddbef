"""Batch size of the demo's forward-pass jobs: throughput of two 1-thread jobs side by side.

The demo runs its model jobs as two 1-thread processes at once (config/demo.yaml, ``compute``).
Their activations at the batch sizes the paper world uses (hundreds of images of 17 tokens x 128
channels, several MB per tensor) do not fit a core's L2 cache, and two jobs then compete for
the shared L3 and memory. This benchmark runs each forward-pass kernel of the workflow, on the
built demo world's own checkpoints and caches, in ``--processes`` processes started together,
at each batch size, and prints the mean wall time per kernel and batch size, the speed-up over
the first size given, and how far the results move (the largest absolute difference of any
table value from the first size's: batches are averaged in another order, so a few ulps).

    make demo   # builds resources/demo
    .venv/bin/python benchmarks/bench_batch_size.py
    .venv/bin/python benchmarks/bench_batch_size.py --kinds evaluate --batch-sizes 500 125 --processes 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

#: kernel -> the demo's batch size before this benchmark (config/demo.yaml at 3517129), listed first.
KINDS = {
    "evaluate": 500,
    "layerwise_interpolation": 1000,
    "layerwise_sharpness": 250,
    "general_sharpness": 500,
}


def run_kernel(kind: str, batch_size: int, resources: Path, model: str, repeats: int) -> dict:
    """Time ``repeats`` runs of one kernel at the demo's settings (after one untimed run)."""
    import numpy as np
    import torch

    from interpsharp.checkpoints import load_classifier
    from interpsharp.data import load_cache
    from interpsharp.evaluate import normalize_images, score_path
    from interpsharp.interpolate import InterpolationPath
    from interpsharp.layerwise_interpolation import layerwise_interpolation
    from interpsharp.sharpness import general_sharpness, layerwise_sharpness
    from interpsharp.subsets import select_subset

    torch.set_num_threads(1)
    theta_0 = load_classifier(str(resources / "checkpoints" / "zeroshot.pt"))
    theta_1 = load_classifier(str(resources / "checkpoints" / f"{model}.pt"), like=theta_0)
    path = InterpolationPath(theta_0.state_dict(), theta_1.state_dict(), device=torch.device("cpu"))
    caches = {p.name: load_cache(str(p)) for p in sorted((resources / "caches").iterdir())}

    # The sharpness sweeps at config/demo.yaml's subset size and draws, at alpha = 1, radius 1.
    sharpness = {"layerwise_sharpness": (layerwise_sharpness, 250, 3), "general_sharpness": (general_sharpness, 500, 5)}
    if kind == "evaluate":
        def kernel():
            scored = score_path(theta_0, path, caches, [0.5], batch_size=batch_size, device="cpu", progress=False)
            return np.concatenate([s.loss.ravel() for s in scored.values()])
    elif kind == "layerwise_interpolation":
        def kernel():
            table = layerwise_interpolation(theta_0, path, {"clutter": caches["clutter"]}, [0.0, 1.0],
                                            batch_size=batch_size, device="cpu", progress=False)
            return table["value"].to_numpy()
    elif kind in sharpness:
        sweep, n_samples, n_iter = sharpness[kind]
        indices = select_subset(len(caches["clutter"]), n_samples, 0)
        images, labels = next(caches["clutter"].batches(len(indices), indices))
        images = normalize_images(images, theta_0.preprocess)

        def kernel():
            table = sweep(theta_0, path, [1.0], images, labels, [1.0], n_iter, 0, batch_size=batch_size, progress=False)
            return table["value"].to_numpy()
    else:
        raise KeyError(f"unknown kernel {kind!r}; choose from {', '.join(KINDS)}")
    kernel()
    start = time.perf_counter()
    for _ in range(repeats):
        values = kernel()
    return {"wall": (time.perf_counter() - start) / repeats, "values": [float(v) for v in values]}


def side_by_side(kind: str, batch_size: int, args: argparse.Namespace) -> list[dict]:
    """Start ``args.processes`` workers at once; their results, once all have finished."""
    command = [sys.executable, __file__, "--worker", kind, str(batch_size), "--resources", str(args.resources),
               "--model", args.model, "--repeats", str(args.repeats)]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(args.processes)]
    results = []
    for worker in workers:
        out, _ = worker.communicate()
        if worker.returncode:
            raise SystemExit(f"worker {kind} at batch size {batch_size} failed (exit {worker.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resources", type=Path, default=Path("resources/demo"),
                        help="a built demo world's checkpoints/ and caches/ (default resources/demo)")
    parser.add_argument("--model", default="model_2", help="the fine-tuned endpoint (default model_2)")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS), help="kernels to time")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[],
                        help="batch sizes to time (default: each kernel's old demo size, then 250, 125, 50)")
    parser.add_argument("--processes", type=int, default=2, help="workers side by side (default 2, as the demo)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per worker (default 1)")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "BATCH_SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    import numpy as np

    if args.worker:
        kind, batch_size = args.worker[0], int(args.worker[1])
        print(json.dumps(run_kernel(kind, batch_size, args.resources, args.model, args.repeats)))
        return
    if not (args.resources / "checkpoints" / "zeroshot.pt").is_file():
        raise SystemExit(f"{args.resources}: no built demo world (checkpoints/zeroshot.pt); run `make demo` first")
    print(f"{args.processes} process(es) side by side, 1 thread each, {os.cpu_count()} CPUs; model {args.model}")
    print(f"{'kernel':<26}{'batch':>7}{'wall s':>9}{'speed-up':>10}{'max |diff|':>13}")
    for kind in args.kinds:
        sizes = args.batch_sizes or list(dict.fromkeys([KINDS[kind], 250, 125, 50]))
        base_wall = base_values = None
        for batch_size in sizes:
            results = side_by_side(kind, batch_size, args)
            wall = sum(r["wall"] for r in results) / len(results)
            values = results[0]["values"]
            if base_wall is None:
                base_wall, base_values = wall, values
            diff = float(np.nanmax(np.abs(np.array(values) - np.array(base_values))))
            print(f"{kind:<26}{batch_size:>7}{wall:>9.2f}{base_wall / wall:>9.2f}x{diff:>13.2e}", flush=True)


if __name__ == "__main__":
    main()
