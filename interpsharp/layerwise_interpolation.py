"""Layer-wise interpolation (Def. 1.1): theta_0 with one layer moved to alpha, for every layer and
every alpha, evaluated like the whole path.

A model's sweep is ``layers x alphas`` evaluations of every set (ViT-B/32: 79 x 21), the
costliest per-model job of the workflow, so it does not run them as independent forward passes:

- **Prefix caching.** Moving one layer leaves every stage before it at theta_0. One theta_0
  pass per chunk of images keeps each stage's input (:class:`~interpsharp.prefix_cache.PrefixCache`)
  and every (layer, alpha) resumes where the layer is first read: the stem still costs a full
  pass, the head almost nothing.
- **alpha = 0 once.** At alpha 0 every layer's model is theta_0 itself; its numbers are the
  theta_0 pass's, shared by all layers.
- **Only the moved layer is written** (:meth:`InterpolationPath.load_layer`) and put back to
  theta_0 afterwards, instead of writing the whole model per point.

Batches are the same as :func:`~interpsharp.evaluate.evaluate_path`'s and scored per image by
the same code, so the table equals ``evaluate_path(..., only=layer)`` per layer, bit for bit on
the CPU (tested), the parts of a selection split included. Memory: the cached stage inputs of one chunk of images on the device; chunks are
sized to ``cache_bytes`` (whole batches, at least one).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from interpsharp.classifier import CLIPClassifier
from interpsharp.data import EvalCache
from interpsharp.evaluate import (
    PATH_COLUMNS,
    PRECISIONS,
    Splits,
    check_outputs,
    check_precision,
    device_batches,
    gather_scores,
    group_index,
    normalize_images,
    path_table,
    pick_device,
    precision_context,
    project_to_groups,
    score_batch,
    scored_path,
)
from interpsharp.interpolate import InterpolationPath
from interpsharp.layers import layer_groups, select_layers
from interpsharp.prefix_cache import PrefixCache, stage_input_bytes

#: Columns of :func:`layerwise_interpolation`'s table, in order (the path table's plus ``layer``).
COLUMNS = (*PATH_COLUMNS, "layer")

#: Device memory for one chunk's cached stage inputs (the model and one batch's activations come
#: on top). ViT-B/32 in fp32 keeps about 2 MB per image: ~1000 images per chunk.
CACHE_BYTES = 2 * 2**30

#: Per-image (correct, loss) device tensors of each batch, in image order.
Tally = list[tuple[torch.Tensor, torch.Tensor]]
#: (layer, alpha, dataset) -> the batches scored so far, read off the device once at the end.
Totals = dict[tuple[str, float, str], Tally]


def images_per_chunk(model: CLIPClassifier, layers: Iterable[str], batch_size: int, cache_bytes: int) -> int:
    """Whole batches of images whose cached stage inputs fit in ``cache_bytes`` (one at least)."""
    batches = cache_bytes // (stage_input_bytes(model, layers) * batch_size)
    return batch_size * max(1, int(batches))


def layerwise_interpolation(
    model: CLIPClassifier,
    path: InterpolationPath,
    caches: Mapping[str, EvalCache],
    alphas: Iterable[float],
    layers: Iterable[str] | None = None,
    model_name: str = "model",
    batch_size: int = 256,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    cache_bytes: int = CACHE_BYTES,
    progress: bool = True,
    splits: Splits | None = None,
) -> pd.DataFrame:
    """Accuracy and loss of every layer's path (others at theta_0) at every alpha on every cache,
    for each set as a whole and for each part ``splits`` names (as :func:`evaluate_path`).

    Rows (:data:`COLUMNS`) come in the order layer, alpha, dataset, split, metric (``accuracy``,
    ``loss``). ``model`` is overwritten (theta_0, then one layer at a time) and left at theta_0.
    """
    device = pick_device(device)
    check_precision(precision)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    path.require_sets_every_tensor_of(model)
    groups = layer_groups(model)
    chosen = select_layers(groups, layers)
    alphas = [float(a) for a in alphas]
    model.to(device=device, dtype=PRECISIONS[precision]).eval()
    path.load_into(model, 0.0)
    chunk = images_per_chunk(model, chosen, batch_size, cache_bytes)
    totals: Totals = {}
    n_chunks = sum(math.ceil(len(cache) / chunk) for cache in caches.values())
    bar = tqdm(total=n_chunks * len(chosen), desc=f"layer-wise interpolation {model_name}", unit="layer",
               disable=not progress)
    for name, cache in caches.items():
        subset = None if cache.class_subset is None else torch.tensor(cache.class_subset, device=device)
        scoring = (subset, group_index(cache.class_groups, device))
        for start in range(0, len(cache), chunk):
            order = np.arange(start, min(start + chunk, len(cache)))
            batches = list(device_batches(cache, order, batch_size, device))
            inputs = [normalize_images(images, model.preprocess, dtype=PRECISIONS[precision]) for images, _ in batches]
            labels = [y for _, y in batches]
            with torch.no_grad(), precision_context(device, precision):
                prefix = PrefixCache(model, inputs, chosen)
                check_outputs(cache, prefix.outputs[0].shape[-1])
                at_zero = _score(prefix.outputs, labels, *scoring)
                for layer in chosen:
                    for alpha in alphas:
                        if alpha == 0.0:
                            scored = at_zero
                        else:
                            path.load_layer(model, alpha, groups[layer])
                            scored = _score([prefix.resume(layer, b) for b in range(len(inputs))], labels, *scoring)
                        _add(totals, (layer, alpha, name), scored)
                    path.load_layer(model, 0.0, groups[layer])
                    bar.update()
    bar.close()
    tables = []
    for layer in chosen:
        scored = {name: scored_path(alphas, [gather_scores(totals[(layer, alpha, name)]) for alpha in alphas])
                  for name in caches}
        tables.append(path_table(scored, model_name, splits).assign(layer=layer))
    return pd.concat(tables, ignore_index=True)[list(COLUMNS)]


def _score(outputs: list[torch.Tensor], labels: list[torch.Tensor], subset: torch.Tensor | None,
           groups: torch.Tensor | None) -> Tally:
    """Per-image (correct, loss) per batch, in batch order."""
    return [score_batch(project_to_groups(logits, groups), y, subset) for logits, y in zip(outputs, labels)]


def _add(totals: Totals, key: tuple[str, float, str], scored: Tally) -> None:
    """Append a chunk's batches to ``key``'s: chunks run in image order, so the gathered scores
    are in the set's order, as :func:`~interpsharp.evaluate.score_images` gives them."""
    totals.setdefault(key, []).extend(scored)
