"""Top-1 accuracy and mean cross-entropy of a classifier on a cache, and along an alpha path.

Images stay uint8 until they reach the device (a quarter of the bytes to move) and are
normalised there. 200-class sets (ImageNet-A/R) are scored as WiSE-FT does: the 1000-way
logits are restricted to the set's classes (``logits[:, class_subset]``) before argmax and
cross-entropy, and the cache's labels index into that subset. ObjectNet (a set with
``class_groups``) is projected as WiSE-FT does: each of its classes takes the maximum logit
over the ImageNet classes mapped to it (:func:`project_to_groups`).

Evaluating a path never copies a model: one preallocated classifier is overwritten in place
with ``theta(alpha)`` for every alpha (:meth:`InterpolationPath.load_into`).

Scoring is per image (:class:`ImageScores`: top-1 correctness and cross-entropy of every image)
and aggregated afterwards, so one pass gives the accuracy and loss of the whole set and of any
part of it (the selection and held-out parts of :mod:`interpsharp.subsets`), and the per-image
scores of a path (:class:`ScoredPath`) can be kept for paired statistics such as the bootstrap
interval of a held-out gain.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from interpsharp.classifier import Preprocess
from interpsharp.data import EvalCache
from interpsharp.interpolate import InterpolationPath
from interpsharp.scores import PATH_COLUMNS, EvalResult, ImageScores, ScoredPath
from interpsharp.subsets import ALL

#: Weight dtype of each precision. ``bf16`` casts the weights (the fastest CUDA path, see
#: SPEC's throughput table); ``bf16_autocast`` keeps fp32 weights and runs matmuls in bf16.
PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "bf16_autocast": torch.float32,
}

#: ``{dataset: {part name: indices}}``: the parts of sets that get rows of their own.
Splits = Mapping[str, Mapping[str, np.ndarray]]


def check_precision(precision: str) -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`, else raise naming the choices."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else the first CUDA device when there is one, else the CPU."""
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device} requested but CUDA is not available here; use --device cpu")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def normalize_images(
    images: torch.Tensor,
    preprocess: Preprocess,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` -> ``((x / 255) - mean) / std`` in ``dtype``, on the images' device.

    ``preprocess`` is the tower's (``model.preprocess``) and has no default on purpose: OpenAI's
    constants are wrong for towers trained with others (LAION's ViT-L-14: mean/std 0.5).
    Computed in float32 as one fused multiply-add (``x * 1/(255 std) - mean/std``) and only
    then cast, so bf16 inputs are rounded once.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    std_t = torch.tensor(preprocess.std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    mean_t = torch.tensor(preprocess.mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return torch.addcmul(-mean_t / std_t, images.to(torch.float32), 1.0 / (255.0 * std_t)).to(dtype)


def model_preprocess(model: nn.Module) -> Preprocess:
    """The input normalisation a model was trained with (``CLIPClassifier.preprocess``)."""
    preprocess = getattr(model, "preprocess", None)
    if not isinstance(preprocess, Preprocess):
        raise TypeError(f"{type(model).__name__} carries no input normalisation (a .preprocess); evaluate CLIPClassifier models")
    return preprocess


def prepare_model(model: nn.Module, device: torch.device, precision: str) -> nn.Module:
    """Move ``model`` to ``device`` and its weights to the precision's dtype, in place, eval mode.

    Casting down to bf16 is allowed; casting a bf16 model back up for an fp32 evaluation is
    refused, because the rounding would silently stay in the "fp32" numbers.
    """
    dtype = PRECISIONS[check_precision(precision)]
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if dtype == torch.float32 and torch.bfloat16 in dtypes:
        raise ValueError(
            f"model weights are bfloat16 (cast by an earlier precision='bf16' evaluation) but precision "
            f"{precision!r} needs fp32 weights; reload them (e.g. InterpolationPath.load_into) first"
        )
    return model.to(device=device, dtype=dtype).eval()


def precision_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context forward passes of ``precision`` run in: autocast for ``bf16_autocast``
    (fp32 weights, bf16 matmuls), nothing otherwise (the weights' dtype decides).

    Autocast's weight cache is off: it keeps the bf16 copy of a parameter for the whole
    context, so weights rewritten in place inside it (every sweep does that) would be ignored.
    """
    if precision == "bf16_autocast":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()


def read_rows(source: np.ndarray, idx: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Copy ``source[idx]`` into ``out`` with one copy: a slice read for consecutive indices
    (sequential disk reads from a memory map), else ``np.take`` into ``out``."""
    if idx[-1] - idx[0] == len(idx) - 1 and np.all(np.diff(idx) == 1):
        out[...] = source[idx[0]:idx[-1] + 1]
    else:
        # mode="clip" writes straight into ``out`` (the default mode buffers a copy); callers
        # range-check the indices.
        np.take(source, idx, axis=0, out=out, mode="clip")
    return out


def device_batches(
    cache: EvalCache, order: np.ndarray, batch_size: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """uint8 image batches and int64 labels on ``device``, in ``order``.

    On CUDA, memory-mapped rows are read straight into two alternating pinned buffers and sent
    with ``non_blocking`` copies, so reading the next batch from disk overlaps the GPU's work
    on this one; an event per buffer stops a buffer being refilled before its copy finished.
    """
    labels = torch.from_numpy(cache.labels[order]).to(device)
    if device.type != "cuda":
        for start, (images, _) in zip(range(0, len(order), batch_size), cache.batches(batch_size, order)):
            yield images.to(device), labels[start:start + len(images)]
        return
    buffers = [torch.empty((batch_size, *cache.images.shape[1:]), dtype=torch.uint8).pin_memory() for _ in range(2)]
    copied: list[torch.cuda.Event | None] = [None, None]
    for step, start in enumerate(range(0, len(order), batch_size)):
        slot = step % 2
        if copied[slot] is not None:
            copied[slot].synchronize()
        idx = order[start:start + batch_size]
        read_rows(cache.images, idx, buffers[slot][:len(idx)].numpy())
        images = buffers[slot][:len(idx)].to(device, non_blocking=True)
        copied[slot] = torch.cuda.Event()
        copied[slot].record()
        yield images, labels[start:start + len(idx)]


def evaluate(
    model: nn.Module,
    cache: EvalCache,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    indices: Sequence[int] | None = None,
    progress: bool = True,
) -> EvalResult:
    """Top-1 accuracy and mean cross-entropy of ``model`` on ``cache`` (or its ``indices``).

    The model is moved and cast in place (see :func:`prepare_model`): evaluation never copies
    a model. The loss is summed in float64 over images, so the batch size does not change it.
    """
    return score_images(model, cache, batch_size, device, precision, indices, progress).summary()


def score_images(
    model: nn.Module,
    cache: EvalCache,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    indices: Sequence[int] | None = None,
    progress: bool = True,
) -> ImageScores:
    """Per-image correctness and cross-entropy of ``model`` on ``cache`` (or its ``indices``, in
    that order); the model is moved and cast in place as in :func:`evaluate`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = pick_device(device)
    # Outside inference mode: tensors created in it (a moved or cast parameter) could never
    # take part in autograd again, and sharpness needs gradients through the same model.
    prepare_model(model, device, precision)
    with torch.inference_mode():
        return _score(model, cache, batch_size, device, precision, indices, progress)


def _score(
    model: nn.Module,
    cache: EvalCache,
    batch_size: int,
    device: torch.device,
    precision: str,
    indices: Sequence[int] | None,
    progress: bool,
) -> ImageScores:
    order = np.arange(len(cache)) if indices is None else np.asarray(indices, dtype=np.int64)
    if len(order) == 0:
        raise ValueError(f"{cache.path}: nothing to evaluate (empty cache or empty indices)")
    if order.min() < 0 or order.max() >= len(cache):
        raise IndexError(f"{cache.path}: indices must lie in 0..{len(cache) - 1}")
    subset = None if cache.class_subset is None else torch.tensor(cache.class_subset, device=device)
    groups = group_index(cache.class_groups, device)
    input_dtype = PRECISIONS[precision]
    preprocess = model_preprocess(model)
    autocast = precision_context(device, precision)
    scored = []
    batches = tqdm(
        device_batches(cache, order, batch_size, device),
        total=math.ceil(len(order) / batch_size),
        desc=f"evaluate {cache.name}",
        unit="batch",
        disable=not progress,
    )
    for step, (images, labels) in enumerate(batches):
        with autocast:
            logits = model(normalize_images(images, preprocess, dtype=input_dtype))
        if step == 0:
            check_outputs(cache, logits.shape[-1])
        scored.append(score_batch(project_to_groups(logits, groups), labels, subset))
    return gather_scores(scored)


def score_batch(
    logits: torch.Tensor, labels: torch.Tensor, subset: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image top-1 correctness (bool) and cross-entropy (float32) of a batch, on the set's
    classes only when ``subset`` holds them (200-class sets). Stays on the device."""
    if subset is not None:
        logits = logits[:, subset]
    logits = logits.float()
    return logits.argmax(dim=1) == labels, F.cross_entropy(logits, labels, reduction="none")


def gather_scores(batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> ImageScores:
    """Per-batch device tensors of :func:`score_batch`, in image order, as one :class:`ImageScores`
    (one device-to-host transfer)."""
    correct = torch.cat([c for c, _ in batches]).cpu().numpy()
    loss = torch.cat([l for _, l in batches]).cpu().numpy().astype(np.float32, copy=False)
    return ImageScores(correct=correct, loss=loss)


def group_index(groups: Sequence[Sequence[int]] | None, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """Class groups (head indices per class of the set) as a ``(classes, widest group)`` index,
    short groups padded with their own first index: a repeated logit leaves a maximum as is."""
    if groups is None:
        return None
    width = max(len(group) for group in groups)
    return torch.tensor([list(group) + [group[0]] * (width - len(group)) for group in groups], device=device)


def project_to_groups(logits: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    """WiSE-FT's ObjectNet projection: the logit of each class of the set is the maximum of
    the head's logits over the classes mapped to it (``index`` from :func:`group_index`);
    logits pass unchanged when the set has no groups."""
    return logits if index is None else logits[:, index].amax(dim=-1)


def check_outputs(cache: EvalCache, num_logits: int) -> None:
    if cache.class_groups is not None:
        if max(max(group) for group in cache.class_groups) >= num_logits:
            raise ValueError(f"{cache.path}: class groups index head classes the model's {num_logits} logits do not have")
    elif cache.class_subset is not None:
        if max(cache.class_subset) >= num_logits:
            raise ValueError(
                f"{cache.path}: cache classes are indices up to {max(cache.class_subset)} into a 1000-class head, "
                f"but the model outputs {num_logits} logits"
            )
    elif num_logits != len(cache.classnames):
        raise ValueError(f"{cache.path}: cache has {len(cache.classnames)} classes but the model outputs {num_logits} logits")


def evaluate_path(
    model: nn.Module,
    path: InterpolationPath,
    caches: Mapping[str, EvalCache],
    alphas: Iterable[float],
    only: Iterable[str] | None = None,
    model_name: str = "model",
    batch_size: int = 256,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    progress: bool = True,
    splits: Splits | None = None,
) -> pd.DataFrame:
    """Evaluate ``theta(alpha)`` on every cache for every alpha, in one preallocated ``model``.

    ``only`` restricts interpolation to those parameter names (layer-wise interpolation; the
    caller adds the ``layer`` column). Returns :func:`path_table`'s tidy rows (columns
    :data:`PATH_COLUMNS`): every set as a whole, and each part in ``splits``.
    """
    scored = score_path(model, path, caches, alphas, only, model_name, batch_size, device, precision, progress)
    return path_table(scored, model_name, splits)


def score_path(
    model: nn.Module,
    path: InterpolationPath,
    caches: Mapping[str, EvalCache],
    alphas: Iterable[float],
    only: Iterable[str] | None = None,
    model_name: str = "model",
    batch_size: int = 256,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    progress: bool = True,
) -> dict[str, ScoredPath]:
    """Per-image scores of ``theta(alpha)`` on every cache for every alpha (see :func:`evaluate_path`)."""
    device = pick_device(device)
    check_precision(precision)
    path.require_sets_every_tensor_of(model)
    only = None if only is None else list(only)
    alphas = [float(a) for a in alphas]
    # Every tensor is overwritten per alpha, so casting the model here loses nothing.
    model.to(device=device, dtype=PRECISIONS[precision])
    scores: dict[str, list[ImageScores]] = {name: [] for name in caches}
    for alpha in tqdm(alphas, desc=f"alphas {model_name}", unit="alpha", disable=not progress):
        path.load_into(model, alpha, only=only)
        for name, cache in caches.items():
            scores[name].append(score_images(model, cache, batch_size, device, precision, progress=False))
    return {name: scored_path(alphas, per_alpha) for name, per_alpha in scores.items()}


def scored_path(alphas: Sequence[float], per_alpha: Sequence[ImageScores]) -> ScoredPath:
    """A :class:`ScoredPath` from one :class:`ImageScores` per alpha."""
    return ScoredPath(np.asarray(alphas, dtype=float), np.stack([s.correct for s in per_alpha]),
                      np.stack([s.loss for s in per_alpha]))


def path_table(scored: Mapping[str, ScoredPath], model_name: str, splits: Splits | None = None) -> pd.DataFrame:
    """Tidy rows (:data:`PATH_COLUMNS`) of scored paths: accuracy and loss per alpha of every
    set as a whole (``split = "all"``) and of each part ``splits`` names for it.

    Rows come in the order alpha, dataset, split, metric; all sets must share the alphas.
    """
    splits = splits or {}
    unknown = [name for name in splits if name not in scored]
    if unknown:
        raise KeyError(f"splits given for {unknown}, which were not scored (scored: {', '.join(scored)})")
    alpha_lists = {tuple(p.alphas) for p in scored.values()}
    if len(alpha_lists) > 1:
        raise ValueError("every set of a path table must be scored at the same alphas")
    rows = []
    for i, alpha in enumerate(next(iter(scored.values())).alphas):
        for name, scores in scored.items():
            parts = {ALL: None, **splits.get(name, {})}
            for part, indices in parts.items():
                result = scores.at(i).summary(None if indices is None else np.asarray(indices))
                for metric, value in (("accuracy", result.accuracy), ("loss", result.loss)):
                    rows.append((model_name, name, part, float(alpha), metric, value, result.n))
    return pd.DataFrame(rows, columns=list(PATH_COLUMNS))
