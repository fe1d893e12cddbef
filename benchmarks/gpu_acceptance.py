"""The GPU acceptance run: every GPU claim of SPEC measured by one command, in at most 8 minutes.

    make bench-gpu                                   # = python benchmarks/gpu_acceptance.py
    python benchmarks/gpu_acceptance.py --list       # the steps and their time budgets
    python benchmarks/gpu_acceptance.py --only 1 6   # some steps (numbers or names)
    python benchmarks/gpu_acceptance.py --smoke      # every step at toy size on this machine (< 60 s)

On one GPU, with no network and no data beyond what it generates, it measures (numbers as in
issue 15; the README's "Checking a GPU" says what each figure means):

1. eval       evaluation throughput of a ViT-B-32-quickgelu classifier from a memory-mapped uint8
              cache of synthetic 224-px images, in fp32, TF32, bf16 autocast, bf16 weights and bf16
              + torch.compile, each with top-1 agreement against fp32; the same model on
              GPU-resident images and from a file dropped from the page cache; side by side, the
              peers' loop (torchvision ImageFolder of JPEGs decoded every pass by a DataLoader with
              all the machine's workers, fp32).
2. layerwise  the layer-wise sharpness and layer-wise interpolation sweeps on CUDA, prefix-cached
              against naive (benchmarks/bench_layerwise*.py), and how far their values agree.
3. precision  the precision gate (interpsharp check-precision) on the demo world's models and on
              a ViT-B/32-shaped pair: a verdict per candidate precision and quantity.
4. cuda-cpu   noise draws identical to the CPU's bit for bit; a general and a layer-wise
              sharpness value and a path point equal within a stated tolerance.
5. ci-world   config/ci.yaml on the GPU through profiles/workstation (gpu=1) against the same
              world on the CPU: every table within tolerance, the GPU slot claimed and released.
6. cost       the measured throughputs written to throughputs.json and priced by
              ``interpsharp estimate --throughputs`` next to SPEC's assumptions.

Each step has a time budget (``--list``; they add up to at most 8 minutes on one H100/H200), a
hard stop at 1.5 times its budget, and can be left out; a step that fails or crashes does not
stop the others. The run writes ``gpu_acceptance.json`` and ``gpu_acceptance.md`` (figure, goal,
pass/fail; GPU name, driver, torch and CUDA versions) after every step, plus
``throughputs.json``, ``estimate.txt``, ``precision_verdicts.tsv`` and ``ci_world_tables.tsv``
into ``--out``. Steps run in the order 1 2 4 5 3 6: step 3 reuses the demo world step 5 built.

``--smoke`` runs every step at toy size (a tiny ViT, a few hundred images) on this machine's
CUDA if it has one, else on the CPU, so the script cannot rot while no GPU is at hand (it runs
in ``make test``). Goals are not judged there, and the parts that need CUDA say "skipped: no
CUDA" while the rest of their code still runs (step 4 compares the CPU with itself, step 5 does
a dry run of its Snakemake command through the profile).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import datetime
import gc
import io
import json
import math
import mmap
import multiprocessing
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
# The sibling benchmarks are imported as modules; the checkout itself too, so the run works
# from a plain copy of the working tree (a GPU machine with torch but no install of the project).
sys.path[:0] = [str(BENCHMARKS), str(ROOT)]

import bench_layerwise  # noqa: E402
import bench_layerwise_interpolation  # noqa: E402

from interpsharp.checkpoints import random_classifier  # noqa: E402
from interpsharp.classifier import CLIPClassifier, VitArchitecture  # noqa: E402
from interpsharp.data import CacheWriter, EvalCache, load_cache  # noqa: E402
from interpsharp.evaluate import (  # noqa: E402
    PRECISIONS,
    device_batches,
    evaluate_path,
    gather_scores,
    normalize_images,
    precision_context,
    score_batch,
    score_images,
)
from interpsharp.interpolate import InterpolationPath  # noqa: E402
from interpsharp.layers import layer_groups  # noqa: E402
from interpsharp.sharpness import average_sharpness, layerwise_sharpness, perturbation_noise, rademacher_probe  # noqa: E402

#: The whole run must fit this on one H100/H200 (issue 15).
TOTAL_BUDGET_S = 8 * 60
#: A step is stopped at this multiple of its budget (and is then over budget).
HARD_STOP = 1.5
#: The smoke run's own limit (issue 15), reported beside its measured time.
SMOKE_LIMIT_S = 60
RESULT_FORMAT = "interpsharp-gpu-acceptance/1"

#: A tiny ViT with ViT-B/32's 1000-class head for the smoke run (bench_evaluate's shape).
TINY_1000 = VitArchitecture(image_size=32, patch_size=8, width=128, layers=4, head_width=64, mlp_ratio=4.0,
                            embed_dim=64, num_classes=1000)


# ============================================================================ sizes

@dataclass(frozen=True)
class Sizes:
    """How big each step is: the full run on one GPU, or the smoke run's toy sizes."""

    vit: str                       # "ViT-B-32-quickgelu" or "tiny" (TINY_1000 / the demo shape)
    eval_images: int               # step 1: synthetic cache; a multiple of eval_batch (no recompile)
    eval_batch: int
    eval_passes: int               # timed passes per variant (fp32: one, it is the slowest)
    noise_sigma: float             # grey levels of noise around each class's prototype image (20: ViT-B/32's
                                   # fp32 top-1 margins then exceed 1.2 logits for 99 % of the images, against
                                   # at most 0.36 of bf16 rounding; measured on a CPU with 300 images)
    jpeg_images: int               # step 1: the peers' loop
    jpeg_batch: int
    jpeg_passes: int
    compile_backend: str           # torch.compile backend: inductor on the GPU, eager (trace only) in smoke
    sweep_images: int              # step 2: layer-wise sharpness sweep
    sweep_repeats: int
    interp_images: int             # step 2: layer-wise interpolation sweep
    interp_alphas: tuple[float, ...]
    interp_batch: int
    sweep_precision: str
    precision_images: int          # step 3: the ViT-B/32-shaped pair's cache
    precision_sharpness_images: int
    precision_general_draws: int
    precision_layerwise_draws: int
    precision_layers: int | None   # layer-wise sharpness on this many layers (None: all)
    precision_demo_models: int     # demo-world models checked (0: none)
    device_images: int             # step 4
    ci_world: bool                 # step 5: the real runs (else a dry run of the GPU command)


FULL = Sizes(
    vit="ViT-B-32-quickgelu", eval_images=20480, eval_batch=1024, eval_passes=2, noise_sigma=20.0,
    jpeg_images=8192, jpeg_batch=256, jpeg_passes=2, compile_backend="inductor",
    sweep_images=1024, sweep_repeats=2, interp_images=512, interp_alphas=(0.0, 0.5, 1.0), interp_batch=256,
    sweep_precision="bf16",
    precision_images=2000, precision_sharpness_images=256, precision_general_draws=4, precision_layerwise_draws=3,
    precision_layers=None, precision_demo_models=3,
    device_images=64, ci_world=True,
)
SMOKE = Sizes(
    vit="tiny", eval_images=256, eval_batch=64, eval_passes=1, noise_sigma=20.0,
    jpeg_images=32, jpeg_batch=8, jpeg_passes=1, compile_backend="eager",
    sweep_images=16, sweep_repeats=1, interp_images=32, interp_alphas=(0.0, 1.0), interp_batch=16,
    sweep_precision="bf16",
    precision_images=64, precision_sharpness_images=16, precision_general_draws=2, precision_layerwise_draws=2,
    precision_layers=3, precision_demo_models=0,
    device_images=32, ci_world=False,
)


# ============================================================================ results

@dataclass
class Figure:
    """One row of the acceptance table. ``passed`` is None where nothing is judged (no goal,
    or the smoke run)."""

    name: str
    value: float | str | None
    unit: str = ""
    goal: str = ""
    passed: bool | None = None
    note: str = ""


@dataclass
class Outcome:
    """What a step function returns: its figures, files it wrote, or why it was skipped (the
    code that could run without CUDA has then run; ``note`` says what)."""

    figures: list[Figure] = field(default_factory=list)
    skipped: str | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepResult:
    number: int
    name: str
    title: str
    budget_s: int
    status: str              # passed, failed, measured (no goal judged), skipped, error, timeout
    seconds: float
    reason: str = ""
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


class StepTimeout(Exception):
    """Raised in the main thread when a step passes its hard stop."""


class Skip(Exception):
    """A step that cannot run here at all (say why)."""


# ============================================================================ the run

@dataclass
class Run:
    smoke: bool
    device: torch.device
    out: Path
    scratch: Path
    sizes: Sizes
    shared: dict[str, Any] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def judge(self, value: float | None, goal: str) -> bool | None:
        """``value`` against a goal written ``>= x`` or ``<= x``; None in smoke runs or without a value."""
        if self.smoke or value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        op, target = goal.split()
        return value >= float(target) if op == ">=" else value <= float(target)

    def figure(self, name: str, value: float | None, unit: str = "", goal: str = "", note: str = "") -> Figure:
        return Figure(name, value, unit, goal, self.judge(value, goal) if goal else None, note)

    def log(self, message: str) -> None:
        print(f"  {message}", flush=True)


def attempt(figures: list[Figure], name: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, or None after recording its failure as a failed figure, so that one broken part
    (a compile error, a DataLoader that cannot start its workers) leaves the step's other figures."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - reported in the table, the step goes on
        traceback.print_exc()
        figures.append(Figure(name, f"error: {type(err).__name__}: {err}"[:300], goal="runs", passed=False))
        return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``fn()`` and its wall seconds, the device's queued work included."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 for CUDA matmuls and cuDNN convolutions on or off inside, restored after."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


# ============================================================================ synthetic data

def prototype_images(n_classes: int, size: int, seed: int, device: torch.device) -> torch.Tensor:
    """One smooth random uint8 image per class (a 7x7 colour grid, bicubically upsampled)."""
    coarse = torch.rand(n_classes, 3, 7, 7, generator=torch.Generator().manual_seed(seed))
    smooth = F.interpolate(coarse.to(device), size=size, mode="bicubic", align_corners=False)
    return (smooth.clamp(0, 1) * 255).round().to(torch.uint8)


@torch.no_grad()
def set_prototype_head(model: CLIPClassifier, prototypes: torch.Tensor, batch_size: int) -> None:
    """Head rows 100 x the centred, normalised features of each class's prototype image.

    A random tower maps every image to nearly one feature direction, so a random head gives
    almost every image the same class (96 % of them on the smoke run's tiny model), which would
    make top-1 agreement meaningless. With one row per prototype, each image gets the class of
    the prototype it resembles. The rows are centred on the prototypes' mean feature (the bias
    subtracts it) before normalising, so that the differences between features, not their
    shared direction, fill the zero-shot head's logit scale of 100: margins of a logit or
    more, which rounding does not flip by accident.
    """
    features = torch.cat([F.normalize(model.encode_image(normalize_images(prototypes[i:i + batch_size], model.preprocess)), dim=-1)
                          for i in range(0, len(prototypes), batch_size)])
    mu = features.mean(0)
    weight = 100 * F.normalize(features - mu, dim=-1)
    model.classification_head.weight.copy_(weight)
    model.classification_head.bias.copy_(-(weight @ mu))


def prototype_classifier(vit: str, device: torch.device, batch_size: int, seed: int = 0) -> tuple[CLIPClassifier, torch.Tensor]:
    """A ViT-B/32-shaped (or tiny) classifier with random weights and a prototype head, and the
    prototype images (on ``device``)."""
    if vit == "tiny":
        torch.manual_seed(seed)
        model = CLIPClassifier(TINY_1000).eval()
    else:
        model = random_classifier(vit, seed=seed).eval()
    model.to(device)
    prototypes = prototype_images(model.arch.num_classes, model.arch.image_size, seed + 1, device)
    set_prototype_head(model, prototypes, batch_size)
    return model, prototypes


def write_synthetic_cache(folder: Path, prototypes: torch.Tensor, n_images: int, sigma: float, seed: int,
                          name: str = "synthetic", chunk: int = 1024) -> EvalCache:
    """``n_images`` noisy copies of the prototypes (class = prototype, uniformly drawn) as a cache."""
    n_classes, _, size, _ = prototypes.shape
    labels = torch.randint(0, n_classes, (n_images,), generator=torch.Generator().manual_seed(seed))
    generator = torch.Generator(device=prototypes.device).manual_seed(seed + 1)
    meta = {"name": name, "source": "benchmarks/gpu_acceptance.py: prototype images plus Gaussian noise",
            "seed": seed, "noise_sigma": sigma}
    with CacheWriter(folder, n_images, size, [f"class {i}" for i in range(n_classes)], meta=meta) as writer:
        for start in range(0, n_images, chunk):
            y = labels[start:start + chunk]
            noise = torch.randn((len(y), 3, size, size), generator=generator, device=prototypes.device)
            x = (prototypes[y.to(prototypes.device)].float() + sigma * noise).clamp(0, 255).round().to(torch.uint8)
            for i, (image, label) in enumerate(zip(x.cpu().numpy(), y.tolist())):
                writer.add(start + i, image, label)
    return load_cache(folder)


def _write_jpeg_class(job: tuple[str, int, int]) -> int:
    """One class folder of ImageNet-sized JPEGs (500x375, quality 90, smooth content like photos)."""
    from PIL import Image

    folder, count, seed = job
    rng = np.random.default_rng(seed)
    Path(folder).mkdir(parents=True, exist_ok=True)
    for k in range(count):
        coarse = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((500, 375), Image.BICUBIC).save(Path(folder) / f"img_{k}.JPEG", quality=90)
    return count


def write_jpeg_folder(root: Path, n_images: int, workers: int, n_classes: int = 64) -> int:
    """An ImageFolder tree of ``n_images`` JPEGs, written by ``workers`` processes."""
    n_classes = min(n_classes, n_images)
    counts = [n_images // n_classes + (c < n_images % n_classes) for c in range(n_classes)]
    jobs = [(str(root / f"n{c:08d}"), count, c) for c, count in enumerate(counts)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return sum(pool.map(_write_jpeg_class, jobs))


# ============================================================================ page cache

def resident_fraction(path: Path) -> float | None:
    """Share of ``path``'s pages in the page cache (``mincore``), None where it cannot be asked."""
    size = path.stat().st_size
    if size == 0:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        page = mmap.PAGESIZE
        with open(path, "rb") as fh:
            mapped = mmap.mmap(fh.fileno(), size, prot=mmap.PROT_READ)
        try:
            view = np.frombuffer(mapped, dtype=np.uint8)
            vec = (ctypes.c_ubyte * ((size + page - 1) // page))()
            status = libc.mincore(ctypes.c_void_p(view.ctypes.data), ctypes.c_size_t(size), vec)
            del view
        finally:
            mapped.close()
        if status != 0:
            return None
        return float((np.frombuffer(vec, dtype=np.uint8) & 1).mean())
    except (OSError, AttributeError, ValueError):
        return None


def drop_from_page_cache(path: Path) -> None:
    """Ask the kernel to forget ``path``'s (clean) pages, so the next read comes from the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def filesystem_of(path: Path) -> str:
    """The file system type ``path`` lives on (from /proc/mounts; tmpfs means RAM, not a disk)."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and str(path.resolve()).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    return kind


# ============================================================================ step 1: evaluation throughput

@torch.inference_mode()
def predictions(model: torch.nn.Module, cache: EvalCache, batch_size: int, device: torch.device, precision: str) -> np.ndarray:
    """Top-1 classes of every image, fed exactly as ``evaluate`` feeds them."""
    out = []
    with precision_context(device, precision):
        for images, _ in device_batches(cache, np.arange(len(cache)), batch_size, device):
            out.append(model(normalize_images(images, model.preprocess, dtype=PRECISIONS[precision])).argmax(1))
    return torch.cat(out).cpu().numpy()


def cache_rate(model: torch.nn.Module, cache: EvalCache, batch_size: int, device: torch.device, precision: str,
               passes: int) -> tuple[float, float]:
    """Images/s of ``score_images`` (the pipeline's evaluation: memory map -> pinned double buffer
    -> device -> normalise -> model -> per-image scores), median of ``passes`` after a two-batch
    warm-up, and the share of images scored correct (agreement, when the labels are fp32's
    predictions)."""
    warm = np.arange(min(2 * batch_size, len(cache)))
    score_images(model, cache, batch_size, device, precision, indices=warm, progress=False)
    seconds, scores = [], None
    for _ in range(passes):
        scores, s = timed(lambda: score_images(model, cache, batch_size, device, precision, progress=False), device)
        seconds.append(s)
    return len(cache) / statistics.median(seconds), float(scores.correct.mean())


@torch.inference_mode()
def resident_rate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                  precision: str) -> float:
    """Images/s with every image already on the device (no feed): SPEC's "GPU-resident cache"."""
    device = images.device

    def one_pass() -> None:
        scored = [score_batch(model(normalize_images(images[i:i + batch_size], model.preprocess, dtype=PRECISIONS[precision])),
                              labels[i:i + batch_size], None) for i in range(0, len(images), batch_size)]
        gather_scores(scored)

    timed(lambda: score_batch(model(normalize_images(images[:batch_size], model.preprocess, dtype=PRECISIONS[precision])),
                              labels[:batch_size], None), device)
    _, seconds = timed(one_pass, device)
    return len(images) / seconds


def jpeg_loop_rate(model: torch.nn.Module, root: Path, image_size: int, batch_size: int, workers: int,
                   device: torch.device, passes: int) -> float:
    """The peers' loop: ImageFolder of JPEGs, decoded, resized and cropped by CLIP's preprocess in
    ``workers`` DataLoader processes on every pass, fp32 model. Each pass is timed whole, worker
    start-up included, as every evaluation pass pays it."""
    import open_clip
    import torchvision

    dataset = torchvision.datasets.ImageFolder(str(root), transform=open_clip.image_transform(image_size, is_train=False))

    @torch.inference_mode()
    def one_pass() -> None:
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                             pin_memory=device.type == "cuda")
        for x, _ in loader:
            model(x.to(device, non_blocking=True)).argmax(1)

    seconds = [timed(one_pass, device)[1] for _ in range(passes)]
    return len(dataset) / statistics.median(seconds)


def step_eval(run: Run) -> Outcome:
    sizes, device = run.sizes, run.device
    figures: list[Figure] = []
    workers = os.cpu_count() or 1
    model, prototypes = prototype_classifier(sizes.vit, device, sizes.eval_batch)
    folder = run.scratch / "eval_cache"
    start = time.perf_counter()
    write_synthetic_cache(folder, prototypes, sizes.eval_images, sizes.noise_sigma, seed=7)
    write_s = time.perf_counter() - start
    del prototypes
    images_file = folder / "images.npy"
    gib = images_file.stat().st_size / 2**30
    jpeg_root = run.scratch / "jpegs"
    _, jpeg_write_s = timed(lambda: write_jpeg_folder(jpeg_root, sizes.jpeg_images, workers), device)
    run.log(f"{sizes.eval_images} images in a {gib:.2f} GiB cache ({write_s:.1f} s), {sizes.jpeg_images} JPEGs "
            f"({jpeg_write_s:.1f} s), on {filesystem_of(folder)}")

    cache = load_cache(folder)
    generated = cache.labels
    fp32_top1 = predictions(model, cache, sizes.eval_batch, device, "fp32")
    # Labels := fp32's predictions, so every later pass's "correct" is its agreement with fp32.
    cache = dataclasses.replace(cache, labels=fp32_top1.astype(np.int64))
    figures.append(run.figure("fp32 top-1 on the synthetic classes (the task is not degenerate)",
                              100 * float((fp32_top1 == generated).mean()), "%"))
    rates: dict[str, float] = {}

    def variant(name: str, precision: str, forward: torch.nn.Module, passes: int) -> None:
        rate, agreement = cache_rate(forward, cache, sizes.eval_batch, device, precision, passes)
        rates[name] = rate
        note = "torch's defaults, as the pipeline's fp32: fp32 matmuls, cuDNN may use TF32" if name == "fp32" else ""
        figures.append(run.figure(f"{name}: images/s from the cache", rate, "img/s", note=note))
        if name != "fp32":
            figures.append(run.figure(f"{name}: top-1 agreement with fp32", 100 * agreement, "%", ">= 99"))
        run.log(f"{name}: {rate:,.0f} images/s, agreement with fp32 {100 * agreement:.2f} %")

    variant("fp32", "fp32", model, 1)
    jpeg = attempt(figures, "peers' loop: JPEG ImageFolder + DataLoader", lambda: jpeg_loop_rate(
        model, jpeg_root, model.arch.image_size, sizes.jpeg_batch, workers, device, sizes.jpeg_passes))
    if run.cuda:
        with tf32(True):
            variant("tf32", "fp32", model, sizes.eval_passes)
    else:
        figures.append(Figure("tf32: images/s from the cache", None, note="skipped: no CUDA"))
    variant("bf16_autocast", "bf16_autocast", model, sizes.eval_passes)
    variant("bf16", "bf16", model, sizes.eval_passes)  # casts the weights to bf16, in place
    run.shared["throughputs"] = rates  # for step 6, also if a later part of this step fails
    run.shared["throughputs_source"] = (f"benchmarks/gpu_acceptance.py step 1: {sizes.vit} random weights, batch "
                                        f"{sizes.eval_batch}, {sizes.eval_images} images from a memory-mapped uint8 cache")

    del cache
    gc.collect()
    drop_from_page_cache(images_file)
    resident_before = resident_fraction(images_file)
    cache = dataclasses.replace(load_cache(folder), labels=fp32_top1.astype(np.int64))
    _, cold_s = timed(lambda: score_images(model, cache, sizes.eval_batch, device, "bf16", progress=False), device)
    cold = len(cache) / cold_s
    resident_note = ("page-cache residency unknown" if resident_before is None
                     else f"{100 * resident_before:.0f} % of the file in the page cache before the pass")
    cold_ok = resident_before is not None and resident_before < 0.1
    figures.append(run.figure("bf16 weights from disk (file dropped from the page cache)", cold if cold_ok else None,
                              "img/s", ">= 24000", resident_note if cold_ok else
                              f"not measured: {resident_note} ({cold:,.0f} img/s is a page-cache figure)"))

    def compile_and_measure() -> torch.nn.Module:
        compiled = torch.compile(model, backend=sizes.compile_backend)
        warm = np.arange(min(2 * sizes.eval_batch, len(cache)))
        _, compile_s = timed(lambda: score_images(compiled, cache, sizes.eval_batch, device, "bf16", indices=warm,
                                                  progress=False), device)
        figures.append(run.figure(f"bf16+compile: first call (compile, backend {sizes.compile_backend})", compile_s, "s"))
        variant("bf16+compile", "bf16", compiled, sizes.eval_passes)
        return compiled

    compiled = attempt(figures, "bf16+compile", compile_and_measure)
    fastest = "bf16+compile" if compiled is not None else "bf16"
    images = torch.empty((len(cache), *cache.images.shape[1:]), dtype=torch.uint8, device=device)
    for start in range(0, len(cache), sizes.eval_batch):
        images[start:start + sizes.eval_batch] = torch.from_numpy(np.array(cache.images[start:start + sizes.eval_batch])).to(device)
    labels = torch.from_numpy(cache.labels).to(device)
    resident = resident_rate(compiled if compiled is not None else model, images, labels, sizes.eval_batch, "bf16")
    del images
    best_name = max((n for n in ("bf16", "bf16+compile") if n in rates), key=lambda n: rates[n])
    best = rates[best_name]
    figures += [
        run.figure(f"{fastest} on device-resident images (no feed)", resident, "img/s", ">= 30000"),
        run.figure(f"best bf16 form from the cache ({best_name})", best, "img/s", ">= 30000"),
        run.figure(f"feed efficiency: {fastest} from the cache / device-resident", rates[fastest] / resident, "x",
                   note="below 1: the feed, not the GPU, limits the cache run"),
    ]
    if jpeg is not None:
        figures += [run.figure(f"peers' loop: JPEG ImageFolder + DataLoader ({workers} workers), fp32", jpeg, "img/s"),
                    run.figure("best bf16 from the cache / peers' JPEG loop", best / jpeg, "x", ">= 8")]
    shutil.rmtree(jpeg_root, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    torch._dynamo.reset()  # the compiled graphs hold the model's weights on the device
    return Outcome(figures, details={"cache_gib": round(gib, 3), "filesystem": filesystem_of(run.scratch),
                                     "jpeg_workers": workers, "rates": rates, "resident": resident, "jpeg": jpeg,
                                     "cold": cold, "resident_before_cold": resident_before})


# ============================================================================ step 2: layer-wise sweeps

def step_layerwise(run: Run) -> Outcome:
    sizes, device, precision = run.sizes, run.device, run.sizes.sweep_precision
    figures: list[Figure] = []
    if sizes.vit == "tiny":
        sharp_model, interp_model = CLIPClassifier(bench_layerwise.DEMO_ARCH).eval(), CLIPClassifier(bench_layerwise_interpolation.DEMO_ARCH).eval()
    else:
        sharp_model, interp_model = random_classifier(sizes.vit), random_classifier(sizes.vit)
    case = bench_layerwise.random_case(sizes.vit, sharp_model, sizes.sweep_images, device)
    dtype = bench_layerwise.PRECISIONS[precision]
    with torch.no_grad():  # cuBLAS handles and kernels loaded before either side is timed
        case.model.to(dtype=dtype)(case.images.to(dtype))
    naive_s = cached_s = 0.0
    diffs, values = [], []
    for _ in range(sizes.sweep_repeats):
        naive, cached = bench_layerwise.interleaved_sweep(case, precision)
        naive_s, cached_s = naive_s + naive.wall, cached_s + cached.wall
        diffs.append(np.abs(np.array(cached.values) - np.array(naive.values)))
        values.append(np.abs(np.array(naive.values)))
    diff, largest = float(np.max(diffs)), float(np.max(values))
    layers = len(layer_groups(case.model))
    run.log(f"layer-wise sharpness sweep ({layers} layers, {sizes.sweep_images} images, {precision}): naive "
            f"{naive_s:.2f} s, cached {cached_s:.2f} s, max |diff| {diff:.3g}")
    figures += [
        run.figure(f"layer-wise sharpness sweep: naive / prefix-cached ({layers} layers, {sizes.sweep_images} images, "
                   f"{precision})", naive_s / cached_s, "x", ">= 1.9"),
        run.figure("layer-wise sharpness sweep: max |cached - naive| / max |value|", diff / max(largest, 1e-12), "",
                   "<= 0.01", "values identical to the bit" if diff == 0 else f"max |cached - naive| {diff:.3g} nats"),
    ]
    del case
    path = bench_layerwise_interpolation.nearby_path(interp_model, device)
    caches = {"bench": bench_layerwise_interpolation.random_cache(run.scratch / "interp_cache", interp_model.arch,
                                                                   sizes.interp_images)}
    alphas = list(sizes.interp_alphas)
    first = next(iter(layer_groups(interp_model)))
    from interpsharp.layerwise_interpolation import layerwise_interpolation

    layerwise_interpolation(interp_model, path, caches, [0.0, 1.0], layers=[first], batch_size=sizes.interp_batch,
                            device=device, precision=precision, progress=False)  # warm-up
    pair = bench_layerwise_interpolation.sweep_pair(interp_model, path, caches, alphas, sizes.interp_batch, device, precision)
    one_image = 1 / sizes.interp_images
    run.log(f"layer-wise interpolation ({len(alphas)} alphas, {sizes.interp_images} images, {precision}): plain "
            f"{pair.plain_s:.2f} s, cached {pair.cached_s:.2f} s, tables equal {pair.equal}")
    figures += [
        run.figure(f"layer-wise interpolation sweep: plain / prefix-cached ({len(alphas)} alphas, {sizes.interp_images} "
                   f"images, {precision})", pair.speedup, "x", ">= 1.9"),
        run.figure("layer-wise interpolation sweep: max |cached - plain| (accuracy and loss)", pair.max_abs_diff, "",
                   f"<= {one_image:.6g}", "tables equal" if pair.equal else "one image of accuracy allowed"),
    ]
    shutil.rmtree(run.scratch / "interp_cache", ignore_errors=True)
    return Outcome(figures, details={"sharpness_naive_s": naive_s, "sharpness_cached_s": cached_s,
                                     "interpolation_plain_s": pair.plain_s, "interpolation_cached_s": pair.cached_s})


# ============================================================================ step 3: precision gate

def perturbed_endpoint(theta_0: dict[str, torch.Tensor], model: CLIPClassifier, seed: int) -> dict[str, torch.Tensor]:
    """theta_0 moved by r * rms(tensor) * N(0, 1) per tensor, one r ~ U(1 %, 5 %) per layer group:
    a fine-tuning-sized change in a random direction (the precision helper's ViT-B/32 pair)."""
    generator = torch.Generator().manual_seed(seed)
    theta_1 = dict(theta_0)
    for names in layer_groups(model).values():
        r = float(0.01 + 0.04 * torch.rand((), generator=generator))
        for name in names:
            w = theta_0[name].cpu()
            theta_1[name] = w + r * w.pow(2).mean().sqrt() * torch.randn(w.shape, generator=generator)
    return theta_1


def demo_pairs(run: Run) -> tuple[str, Path, list[Path], dict[str, Path]] | None:
    """The demo world step 5 built (its CPU run), if it is there: its checkpoints and caches."""
    world = run.scratch / "ci_cpu" / "resources" / "demo"
    models = sorted((world / "checkpoints").glob("model_*.pt"))
    if not (world / "checkpoints" / "zeroshot.pt").is_file() or not models:
        return None
    caches = {p.name: p for p in sorted((world / "caches").iterdir()) if (p / "meta.json").is_file()}
    return "CI world (step 5)", world / "checkpoints" / "zeroshot.pt", models, caches


def step_precision(run: Run) -> Outcome:
    try:
        from interpsharp.precision import SharpnessSettings, compare_precisions, PrecisionReport
    except ImportError as err:
        raise Skip(f"interpsharp.precision (check-precision) is not in this checkout ({err})") from None
    from interpsharp.checkpoints import load_classifier

    sizes, device = run.sizes, run.device
    candidates = ["bf16", "bf16_autocast"] + (["tf32"] if run.cuda else [])
    alphas = [0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    reports = []

    # The ViT-B/32-shaped pair: theta_0 the prototype classifier, theta_1 a fine-tune-sized step
    # away; labels are fp32's predictions of theta(0.05), which plants a gain at the small
    # alpha where bf16 spacing (0.4-0.8 % of |w|) can erase the path.
    model, prototypes = prototype_classifier(sizes.vit, device, sizes.eval_batch, seed=3)
    theta_0 = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    theta_1 = perturbed_endpoint(theta_0, model, seed=4)
    path = InterpolationPath(theta_0, theta_1, device)
    cache = write_synthetic_cache(run.scratch / "precision_cache", prototypes, sizes.precision_images, sizes.noise_sigma, seed=5)
    del prototypes
    path.load_into(model, 0.05)
    teacher = predictions(model, cache, sizes.eval_batch, device, "fp32")
    cache = dataclasses.replace(cache, labels=teacher.astype(np.int64))
    groups = list(layer_groups(model))
    layers = None if sizes.precision_layers is None else tuple(groups[:: max(1, len(groups) // sizes.precision_layers)][:sizes.precision_layers])
    sharpness = SharpnessSettings(dataset=cache.name, n_samples=sizes.precision_sharpness_images, seed=0,
                                  general_rhos=(1.0,), general_n_iter=sizes.precision_general_draws,
                                  layerwise_rhos=(1.0,), layerwise_n_iter=sizes.precision_layerwise_draws,
                                  layers=layers, alphas=(0.05, 1.0))

    def gate(model: CLIPClassifier, path: InterpolationPath, caches: dict[str, EvalCache], name: str,
             settings: SharpnessSettings, batch_size: int) -> None:
        # Path verdicts for every candidate; sharpness (the expensive part) for bf16 only, the
        # precision a config would switch to.
        reports.append(compare_precisions(model, path, caches, alphas, candidates=candidates, sharpness=None,
                                          model_name=name, batch_size=batch_size, device=device, progress=False))
        reports.append(compare_precisions(model, path, caches, alphas, candidates=["bf16"], sharpness=settings,
                                          model_name=f"{name} (sharpness)", batch_size=batch_size, device=device,
                                          progress=False))

    gate(model, path, {cache.name: cache}, f"{sizes.vit} pair", sharpness, sizes.eval_batch)
    del model, path
    world = demo_pairs(run) if sizes.precision_demo_models else None
    demo_note = "no demo world (step 5 did not run)" if sizes.precision_demo_models and world is None else ""
    if world is not None:
        source, zeroshot, finetuned, cache_dirs = world
        caches = {name: load_cache(p) for name, p in cache_dirs.items()}
        main = "clutter" if "clutter" in caches else list(caches)[-1]
        theta_0 = load_classifier(zeroshot).state_dict()
        for checkpoint in finetuned[:sizes.precision_demo_models]:
            demo = load_classifier(checkpoint)
            demo_path = InterpolationPath(theta_0, demo.state_dict(), device)
            settings = SharpnessSettings(dataset=main, n_samples=None, seed=0, general_rhos=(1.0,), general_n_iter=4,
                                         layerwise_rhos=(1.0,), layerwise_n_iter=2, alphas=(0.05, 1.0))
            gate(demo, demo_path, caches, f"demo {checkpoint.stem}", settings, 256)
        demo_note = f"demo models from the {source}: {', '.join(p.stem for p in finetuned[:sizes.precision_demo_models])}"
    verdicts = PrecisionReport.combine(reports).verdicts
    verdicts.to_csv(run.out / "precision_verdicts.tsv", sep="\t", index=False)
    # Each second check exists for its sharpness rows; its path rows repeat the first's.
    shown = verdicts["quantity"].isin(["evaluation", "sharpness"]) & ~(
        verdicts["model"].str.endswith("(sharpness)") & (verdicts["quantity"] == "evaluation"))
    figures = []
    for row in verdicts[shown].itertuples(index=False):
        # SPEC's gate is the goal only where the paper config relies on it: bf16 evaluation.
        goal = "passes the gate" if (row.candidate, row.quantity) == ("bf16", "evaluation") else ""
        passed = None if run.smoke or not goal else bool(row.passed)
        figures.append(Figure(f"{row.model}: {row.candidate} for {row.quantity}", "passes" if row.passed else "fails",
                              goal=goal, passed=passed, note=f"failed parts: {row.where}"))
    shutil.rmtree(run.scratch / "precision_cache", ignore_errors=True)
    return Outcome(figures, note=demo_note, details={"verdicts": "precision_verdicts.tsv"})


# ============================================================================ step 4: CUDA equals CPU

def compare_devices(reference: torch.device, other: torch.device, n_images: int, scratch: Path) -> list[tuple[str, bool, str]]:
    """(check, equal within its tolerance, what was compared) for noise, sharpness and a path point,
    computed on ``reference`` and on ``other`` in strict fp32 (TF32 off)."""
    checks: list[tuple[str, bool, str]] = []
    arch = bench_layerwise.DEMO_ARCH
    torch.manual_seed(0)
    theta_0 = CLIPClassifier(arch).state_dict()
    theta_1 = {k: v + 0.05 * torch.randn_like(v) for k, v in theta_0.items()}
    names = {name: p.shape for name, p in CLIPClassifier(arch).named_parameters()}

    same = differ = 0
    for name, shape in names.items():
        for draw in range(2):
            for dtype in (torch.float32, torch.bfloat16):
                a = perturbation_noise(name, shape, 0, draw, reference, dtype).cpu()
                b = perturbation_noise(name, shape, 0, draw, other, dtype).cpu()
                same, differ = (same + 1, differ) if torch.equal(a, b) else (same, differ + 1)
            a, b = rademacher_probe(name, shape, 0, draw, reference).cpu(), rademacher_probe(name, shape, 0, draw, other).cpu()
            same, differ = (same + 1, differ) if torch.equal(a, b) else (same, differ + 1)
    checks.append(("noise draws (Gaussian fp32 and bf16, Rademacher) identical to the bit", differ == 0,
                   f"{same} of {same + differ} tensors identical"))

    cache = bench_layerwise_interpolation.random_cache(scratch / "devices_cache", arch, n_images)
    images = normalize_images(torch.from_numpy(np.array(cache.images)), CLIPClassifier(arch).preprocess)
    labels = torch.from_numpy(cache.labels)
    groups = list(layer_groups(CLIPClassifier(arch)))
    layer = groups[len(groups) // 2]  # inside a middle block: the prefix cache resumes there
    results = []
    with tf32(False):
        for device in (reference, other):
            model = CLIPClassifier(arch).eval()
            path = InterpolationPath(theta_0, theta_1, device)
            path.load_into(model.to(device), 0.5)
            general = average_sharpness(model, images.to(device), labels.to(device), rho=1.0, n_iter=4, seed=0)
            lw = layerwise_sharpness(model, path, [0.5], images.to(device), labels.to(device), rhos=[1.0], n_iter=2, seed=0,
                                     layers=[layer], progress=False)
            point = evaluate_path(model, path, {"set": cache}, [0.5], device=device, progress=False)
            results.append((general, lw.set_index(["layer", "metric"])["value"],
                            point[point["split"] == "all"].set_index("metric")["value"]))
    (g0, lw0, p0), (g1, lw1, p1) = results
    tol = 1e-4 * abs(g0.loss)
    checks.append(("general sharpness (rho 1, 4 draws) within 1e-4 x the unperturbed loss",
                   abs(g1.mean - g0.mean) <= tol, f"{g0.mean:.6g} vs {g1.mean:.6g} (|diff| {abs(g1.mean - g0.mean):.2g})"))
    v0, v1 = lw0[(layer, "layerwise_sharpness")], lw1[(layer, "layerwise_sharpness")]
    lw_tol = 1e-4 * abs(lw0[("all", "loss")])
    checks.append((f"layer-wise sharpness of {layer} at alpha 0.5 within 1e-4 x the unperturbed loss",
                   abs(v1 - v0) <= lw_tol, f"{v0:.6g} vs {v1:.6g} (|diff| {abs(v1 - v0):.2g})"))
    acc0, acc1 = p0["accuracy"], p1["accuracy"]
    loss0, loss1 = p0["loss"], p1["loss"]
    checks.append(("path point alpha 0.5: accuracy within one image, loss within 1e-4 relative",
                   abs(acc1 - acc0) <= 1 / n_images + 1e-12 and abs(loss1 - loss0) <= 1e-4 * abs(loss0),
                   f"accuracy {acc0:.4f} vs {acc1:.4f}, loss {loss0:.6g} vs {loss1:.6g}"))
    shutil.rmtree(scratch / "devices_cache", ignore_errors=True)
    return checks


def step_devices(run: Run) -> Outcome:
    other = run.device if run.cuda else torch.device("cpu")
    checks = compare_devices(torch.device("cpu"), other, run.sizes.device_images, run.scratch)
    if not run.cuda:
        unequal = [f"{name}: {note}" for name, ok, note in checks if not ok]
        if unequal:
            raise RuntimeError(f"the CPU disagrees with itself: {'; '.join(unequal)}")
        return Outcome(skipped="no CUDA", note=f"smoke: the comparison code ran with the CPU against itself "
                                               f"({len(checks)} of {len(checks)} checks equal)")
    figures = [Figure(name, "equal" if ok else "differs", goal="equal", passed=None if run.smoke else ok, note=note)
               for name, ok, note in checks]
    return Outcome(figures)


# ============================================================================ step 5: the CI world on the GPU

#: Float cells of two runs' tables agree when |gpu - cpu| <= FLOAT_TOLERANCE * max(1, |cpu|):
#: 1e-3 absolute below 1 and relative above. CUDA runs convolutions in TF32 by default (SPEC
#: allows it), which moves losses by ~1e-4 relative; sharpness values are differences of such
#: losses. Accuracies (rows whose metric is ``accuracy``) may differ by one image, 1/n.
FLOAT_TOLERANCE = 1e-3


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=["", "nan", "NaN"])


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells as strings, a missing value as ``<missing>`` (NaN never equals NaN)."""
    return frame.astype(object).where(frame.notna(), "<missing>").astype(str)


def compare_tables(reference: pd.DataFrame, other: pd.DataFrame) -> tuple[str, int, str]:
    """(status, cells outside tolerance, worst cell) of one table of two runs.

    Status: ``equal`` (every cell), ``within tolerance`` or ``differs``. Text and integer
    columns must be equal; float cells follow :data:`FLOAT_TOLERANCE` (one image for accuracies);
    NaN must meet NaN. Rows are matched after sorting both by their text and integer columns,
    then by their float columns in table order (``alpha``, ``rho``: equal in both runs).
    """
    if list(reference.columns) != list(other.columns) or len(reference) != len(other):
        return "differs", max(len(reference), len(other)), (
            f"shape {reference.shape} vs {other.shape}" if len(reference) != len(other)
            else f"columns {list(reference.columns)} vs {list(other.columns)}")
    if reference.equals(other):
        return "equal", 0, ""
    floats = [c for c in reference.columns if pd.api.types.is_float_dtype(reference[c]) or pd.api.types.is_float_dtype(other[c])]
    keys = [c for c in reference.columns if c not in floats]
    if keys:
        reference = reference.sort_values(keys + floats, kind="stable").reset_index(drop=True)
        other = other.sort_values(keys + floats, kind="stable").reset_index(drop=True)
        ref_text, other_text = as_text(reference[keys]), as_text(other[keys])
        mismatch = ~(ref_text == other_text).all(axis=1)
        if mismatch.any():
            i = int(np.flatnonzero(mismatch.to_numpy())[0])
            cols = [c for c in keys if ref_text.at[i, c] != other_text.at[i, c]]
            return "differs", int(mismatch.sum()), f"row {i}: {', '.join(f'{c} {ref_text.at[i, c]!r} vs {other_text.at[i, c]!r}' for c in cols)}"
        if reference.equals(other):
            return "equal", 0, ""
    outside, worst, worst_excess = 0, "", -np.inf
    accuracy_rows = (reference["metric"] == "accuracy").to_numpy() if "metric" in reference.columns else np.zeros(len(reference), bool)
    n = reference["n"].to_numpy(dtype=float) if "n" in reference.columns else np.full(len(reference), np.inf)
    for column in floats:
        a, b = reference[column].to_numpy(dtype=float), other[column].to_numpy(dtype=float)
        tol = FLOAT_TOLERANCE * np.maximum(1.0, np.abs(a))
        if column == "value":
            tol = np.where(accuracy_rows, 1.0 / n + 1e-12, tol)
        nan_mismatch = np.isnan(a) != np.isnan(b)
        diff = np.where(np.isnan(a) | np.isnan(b), 0.0, np.abs(a - b))
        bad = nan_mismatch | (diff > tol)
        outside += int(bad.sum())
        excess = np.where(nan_mismatch, np.inf, diff / tol)
        i = int(np.argmax(excess))
        if excess[i] > worst_excess and (diff[i] > 0 or nan_mismatch[i]):
            worst_excess = excess[i]
            worst = f"{column} row {i}: {a[i]:.6g} vs {b[i]:.6g} ({excess[i]:.2g} x its tolerance)"
    return ("within tolerance" if outside == 0 else "differs"), outside, worst


def compare_runs(reference: Path, other: Path) -> pd.DataFrame:
    """Every ``*.tsv`` of ``reference`` against the one of the same name under ``other``."""
    rows = []
    for path in sorted(reference.glob("*.tsv")):
        twin = other / path.name
        if not twin.is_file():
            rows.append((path.stem, "missing", 0, f"{twin} not written"))
            continue
        rows.append((path.stem, *compare_tables(read_table(path), read_table(twin))))
    for path in sorted(set(p.name for p in other.glob("*.tsv")) - set(p.name for p in reference.glob("*.tsv"))):
        rows.append((Path(path).stem, "missing", 0, "only in the GPU run"))
    return pd.DataFrame(rows, columns=["table", "status", "cells_outside", "worst"])


def ci_config(path: Path, device: str) -> Path:
    """config/ci.yaml with ``compute.device`` (and one GPU per GPU rule on CUDA), one job per model
    for the path rules (same files, bit for bit, as per alpha: README), written to ``path``."""
    import yaml

    config = yaml.safe_load((ROOT / "config" / "ci.yaml").read_text())
    config["compute"].update(device=device, gpus=1 if device == "cuda" else 0, path_jobs="per_model")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake_command(workdir: Path, config: Path, cores: int, gpu: bool, extra: Sequence[str] = ()) -> list[str]:
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
               "--configfile", str(config), "--cores", str(cores)]
    if gpu:
        command += ["--profile", str(ROOT / "profiles" / "workstation"), "--resources", "gpu=1"]
    return command + list(extra)


def snakemake_env() -> dict[str, str]:
    """The environment of the runs: no CUDA_VISIBLE_DEVICES, so each GPU job claims its slot
    itself (interpsharp.devices) instead of trusting a launcher that is not there."""
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def run_processes(commands: dict[str, list[str]], logs: Path, timeout_s: float) -> dict[str, int]:
    """Run ``commands`` at once (each logged to ``logs/<name>.log``); kill all on a timeout."""
    logs.mkdir(parents=True, exist_ok=True)
    processes = {}
    try:
        for name, command in commands.items():
            with open(logs / f"{name}.log", "w") as log:
                processes[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                                   env=snakemake_env(), start_new_session=True)
        deadline = time.monotonic() + timeout_s
        return {name: p.wait(timeout=max(1.0, deadline - time.monotonic())) for name, p in processes.items()}
    finally:
        for p in processes.values():
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=10)


def gpu_job_logs(workdir: Path) -> list[tuple[Path, bool, bool]]:
    """(log, the job ran a model on cuda, it claimed GPU slot 0) for every job log of a run."""
    found = []
    for log in sorted((workdir / "results" / "demo" / "logs").rglob("*.log")):
        head = log.read_text(errors="replace")[:4000]
        found.append((log, "'device': 'cuda'" in head, "claimed slot 0" in head and "CUDA_VISIBLE_DEVICES=0" in head))
    return found


def slots_released(lock_dir: Path) -> bool | None:
    """True when every GPU slot lock under ``lock_dir`` can be taken now (None: no lock files)."""
    import fcntl

    locks = sorted(lock_dir.glob("gpu*.lock"))
    if not locks:
        return None
    for lock in locks:
        with open(lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(handle, fcntl.LOCK_UN)
    return True


def step_ci_world(run: Run) -> Outcome:
    cores = max(2, (os.cpu_count() or 2) // 2)
    cpu_dir, gpu_dir = run.scratch / "ci_cpu", run.scratch / "ci_gpu"
    cpu_config = ci_config(run.scratch / "ci_configs" / "cpu.yaml", "cpu")
    gpu_config = ci_config(run.scratch / "ci_configs" / "gpu.yaml", "cuda")
    if not (run.cuda and run.sizes.ci_world):
        dry = subprocess.run(snakemake_command(gpu_dir, gpu_config, cores, gpu=True, extra=["-n"]), capture_output=True,
                             text=True, cwd=ROOT, env=snakemake_env(), timeout=300)
        text = dry.stdout + dry.stderr
        if dry.returncode != 0:
            raise RuntimeError(f"dry run of the GPU command failed:\n{text[-3000:]}")
        asks = sum(bool(re.match(r"\s*resources:.*\bgpu=1\b", line)) for line in text.splitlines())
        note = f"dry run through profiles/workstation: {asks} jobs ask for gpu=1"
        if not run.cuda:
            return Outcome(skipped="no CUDA", note=f"smoke: {note}")
        return Outcome([Figure("GPU command dry run", f"{asks} GPU jobs", note="smoke: the real runs need minutes")], note=note)

    # The demo world (images, pretraining, fine-tunes) runs on the CPU in both configs: build it
    # once and give the GPU run a copy, so both runs score the same checkpoints and caches.
    world_s = time.perf_counter()
    codes = run_processes({"world": snakemake_command(cpu_dir, cpu_config, os.cpu_count() or 2, gpu=False,
                                                      extra=["--until", "demo_finetune", "demo_images"])},
                          run.scratch / "ci_logs", timeout_s=240)
    if codes["world"] != 0:
        raise RuntimeError(f"building the CI world failed: see {run.scratch / 'ci_logs' / 'world.log'}")
    shutil.copytree(cpu_dir / "resources", gpu_dir / "resources", dirs_exist_ok=True)
    shutil.copytree(cpu_dir / ".snakemake" / "metadata", gpu_dir / ".snakemake" / "metadata", dirs_exist_ok=True)
    world_s = time.perf_counter() - world_s
    runs_s = time.perf_counter()
    codes = run_processes({"cpu": snakemake_command(cpu_dir, cpu_config, cores, gpu=False),
                           "gpu": snakemake_command(gpu_dir, gpu_config, cores, gpu=True)},
                          run.scratch / "ci_logs", timeout_s=300)
    runs_s = time.perf_counter() - runs_s
    run.log(f"CI world built in {world_s:.0f} s; CPU and GPU runs {runs_s:.0f} s; exit codes {codes}")
    figures = [Figure("both runs complete (exit codes cpu, gpu)", f"{codes['cpu']}, {codes['gpu']}", goal="0, 0",
                      passed=codes["cpu"] == 0 and codes["gpu"] == 0)]
    if codes["gpu"] != 0 or codes["cpu"] != 0:
        tail = (run.scratch / "ci_logs" / "gpu.log").read_text(errors="replace")[-2000:]
        return Outcome(figures, note=f"GPU run log tail: {tail}")
    jobs = [(log, claimed) for log, on_cuda, claimed in gpu_job_logs(gpu_dir) if on_cuda]
    claimed = sum(c for _, c in jobs)
    released = slots_released(gpu_dir / ".snakemake" / "gpu-slots")
    table = compare_runs(cpu_dir / "results" / "demo" / "tables", gpu_dir / "results" / "demo" / "tables")
    table.to_csv(run.out / "ci_world_tables.tsv", sep="\t", index=False)
    ok = table["status"].isin(["equal", "within tolerance"])
    worst = table[~ok]
    figures += [
        Figure("GPU jobs that ran on cuda and claimed GPU slot 0", f"{claimed} of {len(jobs)}", goal="all, at least one",
               passed=len(jobs) > 0 and claimed == len(jobs)),
        Figure("GPU slot free again after the run", {True: "yes", False: "no", None: "no lock file"}[released],
               goal="yes", passed=released is True),
        Figure("tables within tolerance of the CPU run's", f"{int(ok.sum())} of {len(table)}", goal="all",
               passed=bool(ok.all()) and len(table) > 0,
               note="; ".join(f"{r.table}: {r.status} ({r.cells_outside} cells; {r.worst})" for r in worst.itertuples())
               or f"{int((table['status'] == 'equal').sum())} equal to the bit"),
    ]
    return Outcome(figures, details={"world_s": world_s, "runs_s": runs_s, "tables": "ci_world_tables.tsv"})


# ============================================================================ step 6: calibrated cost

def step_cost(run: Run) -> Outcome:
    from interpsharp.cli import main as cli
    from interpsharp.estimate import Throughputs, hours_against_spec, read_throughputs, write_throughputs

    path = run.out / "throughputs.json"
    if "throughputs" in run.shared:
        write_throughputs(path, Throughputs(run.shared["throughputs"], device=run.shared.get("device_name", str(run.device)),
                                            measured=run.shared.get("date", ""), source=run.shared["throughputs_source"]))
    elif not path.is_file():
        raise Skip(f"no throughputs: step 1 did not run and {path} is not there from an earlier run")
    measured = read_throughputs(path)
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        status = cli(["estimate", "--config", str(ROOT / "config.yaml"), "--throughputs", str(path)])
    (run.out / "estimate.txt").write_text(text.getvalue())
    if status != 0:
        raise RuntimeError(f"interpsharp estimate --throughputs {path} exited {status}")
    import yaml

    hours = hours_against_spec(yaml.safe_load((ROOT / "config.yaml").read_text()), measured.images_per_s).set_index("rule")
    total = hours.loc["total"]
    note = "smoke: a toy model on this machine, not a GPU" if run.smoke else f"measured on {measured.device}"
    figures = [
        run.figure("paper world, naive fp32 (GPU-hours)", total["hours_naive_fp32_measured"], "h",
                   note=f"SPEC's H100 throughputs: {total['hours_naive_fp32_spec']:.1f} h; {note}"),
        run.figure("paper world, as configured (GPU-hours)", total["hours_configured_measured"], "h",
                   note=f"SPEC's: {total['hours_configured_spec']:.1f} h"),
        run.figure("paper world, prefix-cached bf16 (GPU-hours; SPEC's target)", total["hours_cached_bf16_measured"], "h",
                   "<= 12", note=f"SPEC's: {total['hours_cached_bf16_spec']:.1f} h"),
    ]
    return Outcome(figures, details={"throughputs": "throughputs.json", "estimate": "estimate.txt"})


# ============================================================================ registry

@dataclass(frozen=True)
class Step:
    number: int
    name: str
    title: str
    budget_s: int
    cuda_only: bool
    function: Callable[[Run], Outcome]


#: Budgets are estimates for one H100/H200 (README, "Checking a GPU", says how they were made).
STEPS = (
    Step(1, "eval", "Evaluation throughput: uint8 cache (fp32, TF32, bf16, bf16+compile) vs the peers' JPEG loop",
         125, False, step_eval),
    Step(2, "layerwise", "Layer-wise sweeps on CUDA: prefix-cached vs naive", 60, False, step_layerwise),
    Step(3, "precision", "Precision gate (check-precision): bf16 vs fp32 on demo models and a ViT-B/32 pair",
         70, False, step_precision),
    Step(4, "cuda-cpu", "CUDA equals CPU: noise bit for bit, sharpness and a path point", 15, True, step_devices),
    Step(5, "ci-world", "The CI world on the GPU through profiles/workstation vs the CPU", 180, True, step_ci_world),
    Step(6, "cost", "Calibrated cost: interpsharp estimate --throughputs", 10, False, step_cost),
)
#: Step 3 uses the demo world step 5 built, so it runs after it.
RUN_ORDER = (1, 2, 4, 5, 3, 6)


def select_steps(only: Sequence[str] | None, skip: Sequence[str] | None) -> list[Step]:
    """The steps to run, in :data:`RUN_ORDER`; ``only`` and ``skip`` take numbers or names."""
    by_key = {**{str(s.number): s for s in STEPS}, **{s.name: s for s in STEPS}}
    for key in [*(only or []), *(skip or [])]:
        if key not in by_key:
            raise ValueError(f"unknown step {key!r}; steps: {', '.join(f'{s.number} ({s.name})' for s in STEPS)}")
    chosen = {by_key[k].number for k in only} if only else {s.number for s in STEPS}
    chosen -= {by_key[k].number for k in (skip or [])}
    numbered = {s.number: s for s in STEPS}
    return [numbered[n] for n in RUN_ORDER if n in chosen]


def listing() -> str:
    total = sum(s.budget_s for s in STEPS)
    lines = [f"GPU acceptance run: {len(STEPS)} steps; budgets on one H100/H200 add up to {total} s "
             f"({total // 60} min {total % 60} s; limit {TOTAL_BUDGET_S // 60} min)",
             f"{'step':>4}  {'name':<10} {'budget':>7}  {'CUDA':<5} title"]
    for s in STEPS:
        lines.append(f"{s.number:>4}  {s.name:<10} {s.budget_s:>5} s  {'only' if s.cuda_only else '':<5} {s.title}")
    lines.append(f"run order: {' '.join(map(str, RUN_ORDER))} (step 3 reuses the demo world of step 5); "
                 f"each step stops at {HARD_STOP}x its budget")
    return "\n".join(lines)


# ============================================================================ environment and report

def command_output(command: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=ROOT)
        if done.returncode == 0:
            return done.stdout.strip()
    return ""


def environment(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on: GPU, driver, torch, CUDA, packages, commit, host."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("open_clip_torch", "snakemake", "torchvision", "numpy", "pandas"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = "not installed"
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "torch": torch.__version__, "cuda": torch.version.cuda or "none",
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "packages": packages, "device": str(device),
        "commit": os.environ.get("INTERPSHARP_COMMIT") or command_output(["git", "rev-parse", "HEAD"]) or "unknown (no git)",
    }
    git = command_output(["git", "rev-parse", "--is-inside-work-tree"]) == "true"
    info["uncommitted_changes"] = bool(command_output(["git", "status", "--porcelain"])) if git else None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    compute_capability=f"{props.major}.{props.minor}",
                    driver=command_output(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]) or "unknown")
    else:
        info.update(gpu="none", driver="none")
    return info


def format_value(figure: Figure) -> str:
    value = figure.value
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if figure.unit == "img/s":
        return f"{value:,.0f} img/s"
    if figure.unit == "%":
        return f"{value:.2f} %"
    if figure.unit == "x":
        return f"{value:.2f}x"
    return f"{value:.4g} {figure.unit}".strip()


def result_of(figure: Figure) -> str:
    return {True: "pass", False: "FAIL", None: "—"}[figure.passed]


def markdown(results: list[StepResult], env: dict[str, Any], smoke: bool, elapsed: float) -> str:
    kind = "smoke run (toy sizes; goals not judged)" if smoke else "GPU acceptance run"
    lines = [
        f"# interpsharp {kind}",
        "",
        f"{env['date']} on **{env['gpu']}** (driver {env['driver']}), torch {env['torch']}, CUDA {env['cuda']}, "
        f"cuDNN {env['cudnn']}, Python {env['python']}, {env['cpus']} CPUs, commit {env['commit'][:12]}"
        f"{' + uncommitted changes' if env['uncommitted_changes'] else ''}; {elapsed:.0f} s in all.",
        "",
        "| step | figure | value | goal | result |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        for f in r.figures:
            note = f" ({f.note})" if f.note else ""
            lines.append(f"| {r.number} | {f.name}{note} | {format_value(f)} | {f.goal or '—'} | {result_of(f)} |")
        if not r.figures:
            lines.append(f"| {r.number} | {r.title} | — | — | {r.status}: {r.reason} |")
    lines += ["", "| step | status | seconds | budget |", "|---|---|---|---|"]
    for r in results:
        reason = f": {r.reason}" if r.reason else ""
        lines.append(f"| {r.number} {r.name} | {r.status}{reason} | {r.seconds:.1f} | {r.budget_s} |")
    return "\n".join(lines) + "\n"


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (Snakemake runs, loader workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def write_reports(out: Path, results: list[StepResult], env: dict[str, Any], smoke: bool, elapsed: float) -> None:
    record = {"format": RESULT_FORMAT, "mode": "smoke" if smoke else "full", "environment": env,
              "seconds": round(elapsed, 1), "cpu_seconds": round(cpu_seconds(), 1), "total_budget_s": TOTAL_BUDGET_S,
              "steps": [dataclasses.asdict(r) for r in results]}
    for name, text in (("gpu_acceptance.json", json.dumps(record, indent=1, default=str)),
                       ("gpu_acceptance.md", markdown(results, env, smoke, elapsed))):
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, out / name)


# ============================================================================ running steps

@contextlib.contextmanager
def hard_stop(seconds: float | None) -> Iterator[None]:
    """Raise :class:`StepTimeout` in the main thread after ``seconds`` (None: never)."""
    if not seconds:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise StepTimeout(f"stopped at {seconds:.0f} s ({HARD_STOP}x its budget)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_step(step: Step, run: Run) -> StepResult:
    print(f"\n== step {step.number} ({step.name}): {step.title} [budget {step.budget_s} s]", flush=True)
    start = time.perf_counter()
    try:
        with hard_stop(None if run.smoke else HARD_STOP * step.budget_s):
            outcome = step.function(run)
    except Skip as reason:
        print(f"  -> skipped: {reason}", flush=True)
        return StepResult(step.number, step.name, step.title, step.budget_s, "skipped", time.perf_counter() - start,
                          str(reason))
    except StepTimeout as err:
        return StepResult(step.number, step.name, step.title, step.budget_s, "timeout", time.perf_counter() - start, str(err))
    except Exception as err:  # noqa: BLE001 - a failing step must not stop the others
        traceback.print_exc()
        return StepResult(step.number, step.name, step.title, step.budget_s, "error", time.perf_counter() - start,
                          f"{type(err).__name__}: {err}", details={"traceback": traceback.format_exc()[-4000:]})
    finally:
        if run.cuda:
            torch.cuda.empty_cache()
    seconds = time.perf_counter() - start
    if outcome.skipped:
        status, reason = "skipped", outcome.skipped + (f" ({outcome.note})" if outcome.note else "")
    else:
        judged = [f.passed for f in outcome.figures if f.passed is not None]
        status = "measured" if not judged else ("passed" if all(judged) else "failed")
        reason = outcome.note
        if not run.smoke and seconds > step.budget_s:
            reason = f"over budget ({seconds:.0f} s of {step.budget_s} s)" + (f"; {reason}" if reason else "")
    for f in outcome.figures:
        print(f"  {f.name}: {format_value(f)}  [{f.goal or 'no goal'}: {result_of(f)}]{' ' + f.note if f.note else ''}")
    print(f"  -> {status}{': ' + reason if reason else ''} ({seconds:.1f} s)", flush=True)
    return StepResult(step.number, step.name, step.title, step.budget_s, status, seconds, reason, outcome.figures,
                      outcome.details)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="print the steps and their time budgets, run nothing")
    parser.add_argument("--smoke", action="store_true", help="every step at toy size on this machine (< 60 s)")
    parser.add_argument("--only", nargs="+", metavar="STEP", help="run only these steps (numbers or names)")
    parser.add_argument("--skip", nargs="+", metavar="STEP", help="leave these steps out")
    parser.add_argument("--out", default=str(ROOT / "results" / "gpu_acceptance"),
                        help="folder for gpu_acceptance.json/.md and the other result files (default: %(default)s)")
    parser.add_argument("--scratch", help="folder in which a temporary folder holds the generated data, removed at the "
                        "end (default: beside --out); on a disk, not tmpfs, for step 1's from-disk figure")
    parser.add_argument("--keep-scratch", action="store_true", help="keep the generated data")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; the smoke run uses 1)")
    args = parser.parse_args(argv)
    if args.list:
        print(listing())
        return 0
    steps = select_steps(args.only, args.skip)
    if args.threads or args.smoke:
        torch.set_num_threads(args.threads or 1)
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        print("gpu_acceptance: no CUDA device here; the acceptance run measures a GPU. "
              "`--smoke` checks every step at toy size on this machine.", file=sys.stderr)
        return 2
    device = torch.device("cuda" if cuda else "cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scratch_parent = Path(args.scratch) if args.scratch else out.parent
    scratch_parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="gpu_acceptance_scratch.", dir=scratch_parent))
    env = environment(device)
    run = Run(smoke=args.smoke, device=device, out=out, scratch=scratch, sizes=SMOKE if args.smoke else FULL,
              shared={"device_name": env["gpu"] if cuda else f"CPU ({platform.processor() or platform.machine()})",
                      "date": env["date"]})
    print(f"interpsharp GPU acceptance ({'smoke' if args.smoke else 'full'}) on {env['gpu']}, torch {env['torch']}, "
          f"CUDA {env['cuda']}; steps {' '.join(str(s.number) for s in steps)}; results in {out}", flush=True)
    start = time.perf_counter()
    results: list[StepResult] = []
    try:
        for step in steps:
            results.append(run_step(step, run))
            write_reports(out, sorted(results, key=lambda r: r.number), env, args.smoke, time.perf_counter() - start)
    finally:
        if args.keep_scratch:
            print(f"generated data kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    elapsed = time.perf_counter() - start
    limit = SMOKE_LIMIT_S if args.smoke else TOTAL_BUDGET_S
    print(f"\n{markdown(sorted(results, key=lambda r: r.number), env, args.smoke, elapsed)}")
    print(f"{elapsed:.0f} s in all (limit {limit} s), {cpu_seconds():.0f} s of CPU time; {out / 'gpu_acceptance.md'}")
    return 1 if any(r.status in ("error", "failed", "timeout") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
