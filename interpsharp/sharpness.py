"""Adaptive average-case sharpness (Eq. 3), general and layer-wise, and its Hessian-trace check.

``S(w) = E_delta[L(w + delta)] - L(w)`` with ``delta ~ N(0, rho^2 diag(|w|^2))`` on the chosen
parameters, estimated by Monte-Carlo over ``n_iter`` draws on a fixed evaluation subset.

Design choices, and why:

- **Reproducible noise.** The noise of draw ``d`` for parameter ``name`` comes from its own
  CPU ``torch.Generator`` seeded by a hash of ``(seed, d, name)`` (sha256, not Python's salted
  ``hash``), drawn in float32 and only then moved and cast. So CPU and GPU runs, fp32 and fp64
  runs, the cached and the reference implementation, and a layer perturbed alone or with
  every other layer all see the same ``z``. Draw ``d`` is also the same at every alpha and
  every rho (common random numbers), so curves along alpha are not jagged by resampling.
- **No model copies.** One preallocated model is perturbed in place and restored by copying
  back the saved original tensors, bit for bit; interpolation writes ``theta(alpha)`` into the
  same model (:class:`~interpsharp.interpolate.InterpolationPath`).
- **Prefix caching.** Perturbing a layer leaves every forward stage before it unchanged, so the
  layer-wise sweep computes all stage inputs once per alpha and resumes the forward pass at the
  first stage that reads the perturbed layer (:class:`PrefixCachedLoss`, over
  :class:`~interpsharp.prefix_cache.PrefixCache`, which layer-wise interpolation shares); inside
  a transformer block it resumes after the attention residual (``ln_2``, ``mlp.c_fc``) or at the
  MLP hidden state (``mlp.c_proj``). :class:`FullForwardLoss` is the plain reference (full
  forward per draw); both share the perturbation code and agree to rounding (tests, benchmark).
- **Non-finite losses** (large rho can blow a layer up) are counted in ``n_nonfinite`` and
  left out of the mean instead of crashing a long sweep.
- **Precision rule (SPEC).** Sharpness runs in the precision the config names: ``bf16`` only
  where ``interpsharp check-precision`` (:mod:`interpsharp.precision`) shows it agrees with
  fp32 within the Monte-Carlo standard error for that rho, fp32 otherwise; the Prop. A.1 /
  Hutchinson checks run in fp64 on the CPU.
- **Prop. A.1 check.** For small rho, ``2 S / rho^2 -> tr(H ⊙ |w||w|^T)``;
  :func:`hutchinson_trace` estimates that trace with Rademacher probes and Hessian-vector
  products from ``torch.func`` so the Monte-Carlo sharpness can be validated.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm import tqdm

from interpsharp.classifier import CLIPClassifier
from interpsharp.evaluate import group_index, project_to_groups
from interpsharp.interpolate import InterpolationPath
from interpsharp.layers import layer_groups, layer_name_of, select_layers
from interpsharp.prefix_cache import BLOCK_CACHE_BYTES, PrefixCache
from interpsharp.sharpness_modes import MODES, PERTURB_FINETUNED, PERTURB_INTERPOLATED
from interpsharp.subsets import stable_seed

#: ``criterion(outputs, labels)`` -> mean loss over the batch (a 0-d tensor).
Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: Implementations of the layer-wise sweep; ``reference`` exists to check ``prefix_cached``.
IMPLEMENTATIONS = ("prefix_cached", "reference")

#: Weight dtype of each sharpness precision (bf16 casts the weights, as evaluation does).
PRECISIONS: dict[str, torch.dtype] = {"fp64": torch.float64, "fp32": torch.float32, "bf16": torch.bfloat16}

#: Columns of every sharpness table, in order.
COLUMNS = (
    "model", "dataset", "alpha", "layer", "metric", "value", "stderr", "n",
    "n_iter", "n_nonfinite", "rho", "mode", "seed", "antithetic", "precision",
)

#: ``layer`` value of rows about the whole model (general sharpness, unperturbed loss).
ALL_LAYERS = "all"


# -- reproducible randomness ------------------------------------------------------------------

def _to_device(z: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if device.type == "cuda":
        # Pinned + non_blocking lets the CPU draw the next noise while the GPU still runs.
        z = z.pin_memory().to(device, non_blocking=True)
    return z.to(device=device, dtype=dtype)


def perturbation_noise(
    name: str,
    shape: Sequence[int],
    seed: int,
    draw: int,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal ``z`` of parameter ``name`` at draw ``draw``: float32 on the CPU, then cast."""
    gen = torch.Generator(device="cpu").manual_seed(stable_seed("gaussian", seed, draw, name))
    z = torch.randn(tuple(shape), generator=gen, dtype=torch.float32)
    return _to_device(z, torch.device(device), dtype)


def rademacher_probe(
    name: str,
    shape: Sequence[int],
    seed: int,
    sample: int,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Rademacher ``z`` (entries +-1) of parameter ``name`` for Hutchinson sample ``sample``."""
    gen = torch.Generator(device="cpu").manual_seed(stable_seed("rademacher", seed, sample, name))
    z = torch.randint(0, 2, tuple(shape), generator=gen, dtype=torch.int8).float().mul_(2).sub_(1)
    return _to_device(z, torch.device(device), dtype)


# -- losses -----------------------------------------------------------------------------------

def cross_entropy_criterion(
    class_subset: Sequence[int] | None = None, class_groups: Sequence[Sequence[int]] | None = None
) -> Criterion:
    """Mean cross-entropy; with ``class_subset`` the logits are first restricted to those classes
    (WiSE-FT's scoring of 200-class sets on a 1000-class head; labels index the subset), with
    ``class_groups`` projected to the set's classes by the maximum over each group (ObjectNet)."""
    index = None if class_subset is None else torch.as_tensor(list(class_subset), dtype=torch.long)
    groups = group_index(class_groups)

    def criterion(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = project_to_groups(logits, None if groups is None else groups.to(logits.device))
        if index is not None:
            logits = logits.index_select(1, index.to(logits.device))
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        return F.cross_entropy(logits, labels)

    return criterion


def _batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if len(images) != len(labels) or len(labels) == 0:
        raise ValueError(f"need as many labels as images (and at least one): {len(images)} images, {len(labels)} labels")
    return [(images[i:i + batch_size], labels[i:i + batch_size]) for i in range(0, len(labels), batch_size)]


def _batch_mean(
    forward: Callable[[int], torch.Tensor],
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    criterion: Criterion,
) -> torch.Tensor:
    """Mean loss over all samples from per-batch means; ``forward(b)`` gives batch b's outputs."""
    n = sum(len(y) for _, y in batches)
    total = None
    for b, (_, y) in enumerate(batches):
        term = criterion(forward(b), y) * (len(y) / n)
        total = term if total is None else total + term
    return total


class FullForwardLoss:
    """Reference evaluator: every loss runs the model's whole forward pass on the images."""

    def __init__(self, model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], criterion: Criterion) -> None:
        self.model, self.batches, self.criterion = model, batches, criterion
        self.baseline = self.loss(None)

    @torch.no_grad()
    def loss(self, layer: str | None) -> torch.Tensor:
        """Loss of the model's current weights (``layer`` is irrelevant here)."""
        return _batch_mean(lambda b: self.model(self.batches[b][0]), self.batches, self.criterion)


# -- prefix caching ---------------------------------------------------------------------------

class PrefixCachedLoss:
    """Loss after a change to one layer, recomputing only the stages that depend on it.

    Built once per set of weights (one alpha) over a :class:`~interpsharp.prefix_cache.PrefixCache`
    of the batches' images; ``loss(layer)`` resumes each batch where ``layer`` is first read,
    with the model's current weights, which must differ from the cached ones only in ``layer``.
    """

    def __init__(
        self,
        model: CLIPClassifier,
        batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
        criterion: Criterion,
        layers: Iterable[str],
        within_blocks: bool = True,
        block_cache_bytes: int = BLOCK_CACHE_BYTES,
    ) -> None:
        self.batches, self.criterion = batches, criterion
        self.cache = PrefixCache(model, [x for x, _ in batches], layers, within_blocks, block_cache_bytes)
        with torch.no_grad():
            self.baseline = _batch_mean(lambda b: self.cache.outputs[b], batches, criterion)

    @torch.no_grad()
    def loss(self, layer: str) -> torch.Tensor:
        return _batch_mean(lambda b: self.cache.resume(layer, b), self.batches, self.criterion)


# -- Monte-Carlo core -------------------------------------------------------------------------

@dataclass(frozen=True)
class SharpnessEstimate:
    """Monte-Carlo sharpness: mean and standard error over finite draws, the unperturbed loss,
    every draw's ``L(w + delta) - L(w)`` (non-finite ones included) and how many were non-finite."""

    mean: float
    stderr: float
    loss: float
    draws: tuple[float, ...]
    n_nonfinite: int
    rho: float
    seed: int
    antithetic: bool


def _check_draws(n_iter: int, antithetic: bool) -> None:
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    if antithetic and n_iter % 2:
        raise ValueError(f"antithetic draws come in pairs: n_iter must be even, got {n_iter}")


def perturbed_losses(
    params: Sequence[tuple[str, nn.Parameter]],
    scales: Sequence[torch.Tensor],
    n_iter: int,
    seed: int,
    antithetic: bool,
    evaluate: Callable[[], torch.Tensor],
) -> torch.Tensor:
    """``evaluate()`` at ``w + scale * z_d`` for each draw d, restoring ``w`` exactly after each.

    The core of every estimator here: ``params`` are perturbed in place (noise from
    :func:`perturbation_noise`, ``scales`` its per-element standard deviation) and copied back
    from saved originals, also when ``evaluate`` raises. Returns the losses as one tensor.

    With ``antithetic``, draws 2k and 2k+1 use ``+z_k`` and ``-z_k``: the first-order term
    cancels within a pair, which makes small-rho estimates (Prop. A.1) far less noisy.
    """
    originals = [p.detach().clone() for _, p in params]
    losses = []
    for d in range(n_iter):
        draw, sign = (d // 2, -1.0 if d % 2 else 1.0) if antithetic else (d, 1.0)
        try:
            with torch.no_grad():
                for (name, p), scale in zip(params, scales):
                    p.add_(scale * perturbation_noise(name, p.shape, seed, draw, p.device, p.dtype), alpha=sign)
            losses.append(evaluate())
        finally:
            with torch.no_grad():
                for (_, p), original in zip(params, originals):
                    p.copy_(original)
    return torch.stack([loss.detach().reshape(()) for loss in losses])


def _estimate(losses: np.ndarray, baseline: float, rho: float, seed: int, antithetic: bool) -> SharpnessEstimate:
    draws = losses.astype(np.float64) - baseline
    finite = np.isfinite(draws)
    if antithetic:
        pairs = draws.reshape(-1, 2)
        samples = pairs[np.isfinite(pairs).all(axis=1)].mean(axis=1)
    else:
        samples = draws[finite]
    mean = float(samples.mean()) if len(samples) else math.nan
    stderr = float(samples.std(ddof=1) / math.sqrt(len(samples))) if len(samples) > 1 else math.nan
    return SharpnessEstimate(mean, stderr, float(baseline), tuple(map(float, draws)), int((~finite).sum()), float(rho), int(seed), antithetic)


def parameter_groups(model: nn.Module) -> "OrderedDict[str, list[str]]":
    """Layers of ``model`` (SPEC grouping): forward order for a CLIPClassifier, else module order."""
    if isinstance(model, CLIPClassifier):
        return layer_groups(model)
    groups: "OrderedDict[str, list[str]]" = OrderedDict()
    for name, _ in model.named_parameters():
        groups.setdefault(layer_name_of(name), []).append(name)
    return groups


def average_sharpness(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    rho: float,
    n_iter: int,
    seed: int,
    layers: Iterable[str] | None = None,
    class_subset: Sequence[int] | None = None,
    batch_size: int = 256,
    criterion: Criterion | None = None,
    antithetic: bool = False,
) -> SharpnessEstimate:
    """Adaptive average-case sharpness of ``model`` as it is (Eq. 3).

    ``delta ~ N(0, rho^2 |w|^2)`` elementwise on the parameters of ``layers`` (layer names as
    in :func:`parameter_groups`; all parameters when None). ``images`` are model inputs
    (normalised, on the model's device, in its dtype); ``criterion(outputs, labels)`` returns
    the batch-mean loss and defaults to cross-entropy restricted to ``class_subset``. Any
    module works, which lets tests use a loss with a known closed form. The model's weights are
    restored bit for bit afterwards.
    """
    _check_draws(n_iter, antithetic)
    criterion = criterion or cross_entropy_criterion(class_subset)
    groups = parameter_groups(model)
    named = dict(model.named_parameters())
    params = [(n, named[n]) for layer in select_layers(groups, layers) for n in groups[layer]]
    evaluator = FullForwardLoss(model, _batches(images, labels, batch_size), criterion)
    scales = [rho * p.detach().abs() for _, p in params]
    losses = perturbed_losses(params, scales, n_iter, seed, antithetic, lambda: evaluator.loss(None))
    return _estimate(losses.cpu().numpy(), evaluator.baseline.item(), rho, seed, antithetic)


# -- sweeps along the interpolation path ------------------------------------------------------

def _row(model_name: str, dataset: str, alpha: float, layer: str, metric: str, value: float, stderr: float,
         n: int, n_iter: int, n_nonfinite: int, rho: float, mode: str, seed: int, antithetic: bool, precision: str) -> tuple:
    return (model_name, dataset, float(alpha), layer, metric, value, stderr, n, n_iter, n_nonfinite, rho, mode, seed, antithetic, precision)


def _prepare(model: CLIPClassifier, images: torch.Tensor, precision: str) -> torch.Tensor:
    """Cast ``model`` to the precision's dtype in place (every weight is rewritten per alpha, so
    nothing is lost) and return ``images`` on its device in that dtype."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown sharpness precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    model.to(dtype=PRECISIONS[precision]).eval()
    device = next(model.parameters()).device
    return images.to(device=device, dtype=PRECISIONS[precision])


def _check_rhos(rhos: Sequence[float]) -> list[float]:
    rhos = [float(r) for r in rhos]
    if not rhos or any(not r > 0 for r in rhos):
        raise ValueError(f"rho values must be > 0, got {rhos}")
    return rhos


def general_sharpness(
    model: CLIPClassifier,
    path: InterpolationPath,
    alphas: Iterable[float],
    images: torch.Tensor,
    labels: torch.Tensor,
    rhos: Sequence[float],
    n_iter: int,
    seed: int,
    class_subset: Sequence[int] | None = None,
    batch_size: int = 256,
    precision: str = "fp32",
    antithetic: bool = False,
    model_name: str = "model",
    dataset: str = "dataset",
    progress: bool = True,
    class_groups: Sequence[Sequence[int]] | None = None,
) -> pd.DataFrame:
    """General sharpness (noise on every parameter, scaled by ``|theta(alpha)|``) at each alpha.

    One preallocated ``model`` is overwritten with ``theta(alpha)`` per alpha and left at the
    last one. Tidy rows (:data:`COLUMNS`): ``general_sharpness`` per (alpha, rho) and the
    unperturbed ``loss`` per alpha, both with ``layer = "all"``; ``mode`` is
    ``perturb_interpolated`` because the noise scale is the interpolated weights'.
    """
    rhos = _check_rhos(rhos)
    images = _prepare(model, images, precision)
    labels = labels.to(images.device)
    alphas = [float(a) for a in alphas]
    rows = []
    for alpha in tqdm(alphas, desc=f"general sharpness {model_name}", unit="alpha", disable=not progress):
        path.load_into(model, alpha)
        for rho in rhos:
            est = average_sharpness(model, images, labels, rho, n_iter, seed, None, batch_size=batch_size, antithetic=antithetic,
                                    criterion=cross_entropy_criterion(class_subset, class_groups))
            rows.append(_row(model_name, dataset, alpha, ALL_LAYERS, "general_sharpness", est.mean, est.stderr, len(labels),
                             n_iter, est.n_nonfinite, rho, PERTURB_INTERPOLATED, seed, antithetic, precision))
        rows.append(_row(model_name, dataset, alpha, ALL_LAYERS, "loss", est.loss, math.nan, len(labels),
                         0, 0, math.nan, PERTURB_INTERPOLATED, seed, antithetic, precision))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def layerwise_sharpness(
    model: CLIPClassifier,
    path: InterpolationPath,
    alphas: Iterable[float],
    images: torch.Tensor,
    labels: torch.Tensor,
    rhos: Sequence[float],
    n_iter: int,
    seed: int,
    mode: str = PERTURB_FINETUNED,
    layers: Iterable[str] | None = None,
    class_subset: Sequence[int] | None = None,
    batch_size: int = 256,
    precision: str = "fp32",
    antithetic: bool = False,
    implementation: str = "prefix_cached",
    within_blocks: bool = True,
    model_name: str = "model",
    dataset: str = "dataset",
    progress: bool = True,
    class_groups: Sequence[Sequence[int]] | None = None,
) -> pd.DataFrame:
    """Layer-wise sharpness of every layer (or ``layers``) at every alpha.

    ``perturb_finetuned`` (paper Sec. 3.1): perturb layer i of theta_1, then interpolate, i.e.
    ``theta(alpha) + alpha * delta_i`` with ``delta_i ~ N(0, rho^2 |W1_i|^2)``; exactly zero
    at alpha 0. ``perturb_interpolated``: ``delta_i ~ N(0, rho^2 |W_i(alpha)|^2)``.

    ``implementation="prefix_cached"`` resumes each forward pass where the perturbed layer is
    first read (``within_blocks`` also resumes inside transformer blocks, which caches two more
    activations per block: about 6x the memory of block inputs alone); ``"reference"`` runs the
    whole forward pass per draw. Same noise, same numbers up to rounding.

    Rows (:data:`COLUMNS`): ``layerwise_sharpness`` per (alpha, layer, rho) and the unperturbed
    ``loss`` per alpha (``layer = "all"``). ``model`` is left at ``theta(alphas[-1])``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown layer-wise sharpness mode {mode!r}; choose one of {', '.join(MODES)}")
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"unknown implementation {implementation!r}; choose one of {', '.join(IMPLEMENTATIONS)}")
    _check_draws(n_iter, antithetic)
    rhos = _check_rhos(rhos)
    images = _prepare(model, images, precision)
    labels = labels.to(images.device)
    batches = _batches(images, labels, batch_size)
    criterion = cross_entropy_criterion(class_subset, class_groups)
    groups = layer_groups(model)
    chosen = select_layers(groups, layers)
    named = dict(model.named_parameters())
    alphas = [float(a) for a in alphas]
    rows = []
    bar = tqdm(total=len(alphas) * len(chosen), desc=f"layer-wise sharpness {model_name}", unit="layer", disable=not progress)
    for alpha in alphas:
        path.load_into(model, alpha)
        if mode == PERTURB_FINETUNED and alpha == 0.0:
            # The noise is alpha * rho * |W1_i|, exactly 0 here: every draw's loss is the
            # unperturbed loss and S = 0 with stderr 0, bit for bit. One forward pass gives them.
            baseline = FullForwardLoss(model, batches, criterion).baseline.item()
            for layer in chosen:
                for rho in rhos:
                    rows.append(_row(model_name, dataset, alpha, layer, "layerwise_sharpness", 0.0, 0.0, len(labels),
                                     n_iter, 0, rho, mode, seed, antithetic, precision))
            rows.append(_row(model_name, dataset, alpha, ALL_LAYERS, "loss", baseline, math.nan, len(labels),
                             0, 0, math.nan, mode, seed, antithetic, precision))
            bar.update(len(chosen))
            continue
        if implementation == "prefix_cached":
            evaluator = PrefixCachedLoss(model, batches, criterion, chosen, within_blocks)
        else:
            evaluator = FullForwardLoss(model, batches, criterion)
        pending = []
        for layer in chosen:
            params = [(n, named[n]) for n in groups[layer]]
            for rho in rhos:
                scales = [_noise_scale(mode, alpha, rho, p, path.theta_1[n]) for n, p in params]
                losses = perturbed_losses(params, scales, n_iter, seed, antithetic, lambda: evaluator.loss(layer))
                pending.append((layer, rho, losses))
            bar.update()
        # One device-to-host transfer per alpha, so the CPU keeps drawing noise ahead of the GPU.
        baseline = evaluator.baseline.item()
        all_losses = torch.stack([losses for _, _, losses in pending]).cpu().numpy()
        for (layer, rho, _), losses in zip(pending, all_losses):
            est = _estimate(losses, baseline, rho, seed, antithetic)
            rows.append(_row(model_name, dataset, alpha, layer, "layerwise_sharpness", est.mean, est.stderr, len(labels),
                             n_iter, est.n_nonfinite, rho, mode, seed, antithetic, precision))
        rows.append(_row(model_name, dataset, alpha, ALL_LAYERS, "loss", baseline, math.nan, len(labels),
                         0, 0, math.nan, mode, seed, antithetic, precision))
    bar.close()
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _noise_scale(mode: str, alpha: float, rho: float, param: nn.Parameter, finetuned: torch.Tensor) -> torch.Tensor:
    """Per-element noise standard deviation of one parameter (before the unit normal ``z``)."""
    if mode == PERTURB_FINETUNED:
        return (alpha * rho) * finetuned.abs().to(param.dtype)
    return rho * param.detach().abs()


# -- Hessian trace (Prop. A.1 check) ----------------------------------------------------------

@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson estimate of ``tr(H ⊙ |w||w|^T)``: mean, standard error, every sample."""

    mean: float
    stderr: float
    samples: tuple[float, ...]
    seed: int


def hessian_vector_product(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    vector: Mapping[str, torch.Tensor],
    class_subset: Sequence[int] | None = None,
    batch_size: int = 256,
    criterion: Criterion | None = None,
) -> dict[str, torch.Tensor]:
    """``H v`` restricted to the parameters named in ``vector`` (forward-over-reverse ``torch.func``).

    H is the Hessian of the mean loss over all ``images`` with respect to those parameters
    (the others held fixed). Attention runs with the math SDPA kernel: the fused kernels have
    no forward-mode derivative.
    """
    criterion = criterion or cross_entropy_criterion(class_subset)
    named = dict(model.named_parameters())
    unknown = [n for n in vector if n not in named]
    if unknown:
        raise KeyError(f"no parameters named {', '.join(unknown)} in the model")
    fixed = {n: p.detach() for n, p in named.items()}
    primals = {n: fixed[n] for n in vector}
    tangents = {n: v.to(fixed[n]) for n, v in vector.items()}
    batches = _batches(images, labels, batch_size)
    n_total = len(labels)
    result = {n: torch.zeros_like(p) for n, p in primals.items()}
    with sdpa_kernel(SDPBackend.MATH):
        for x, y in batches:
            def batch_loss(chosen: dict[str, torch.Tensor], x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
                return criterion(functional_call(model, {**fixed, **chosen}, (x,)), y)

            _, hv = jvp(grad(batch_loss), (primals,), (tangents,))
            for n in result:
                result[n] += hv[n] * (len(y) / n_total)
    return result


def hutchinson_trace(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    n_samples: int,
    seed: int,
    layers: Iterable[str] | None = None,
    class_subset: Sequence[int] | None = None,
    batch_size: int = 256,
    criterion: Criterion | None = None,
    progress: bool = False,
) -> TraceEstimate:
    """Hutchinson estimate of ``tr(H ⊙ |w||w|^T) = E_z[(z⊙|w|)^T H (z⊙|w|)]``, Rademacher ``z``.

    With ``layers`` the probe lives on those layers only, which estimates the trace of their
    diagonal block of H: the quantity ``2 S / rho^2`` tends to for layer-wise sharpness in
    ``perturb_interpolated`` mode (times ``alpha^2``, with ``|W1|``, in ``perturb_finetuned``).
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    groups = parameter_groups(model)
    named = dict(model.named_parameters())
    names = [n for layer in select_layers(groups, layers) for n in groups[layer]]
    samples = []
    for s in tqdm(range(n_samples), desc="hutchinson", unit="probe", disable=not progress):
        u = {n: named[n].detach().abs() * rademacher_probe(n, named[n].shape, seed, s, named[n].device, named[n].dtype) for n in names}
        hu = hessian_vector_product(model, images, labels, u, class_subset, batch_size, criterion)
        samples.append(sum((u[n] * hu[n]).sum() for n in names).item())
    values = np.array(samples)
    stderr = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
    return TraceEstimate(float(values.mean()), stderr, tuple(samples), int(seed))
