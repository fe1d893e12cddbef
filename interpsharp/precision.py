"""Is a cheaper precision good enough? fp32 against bf16 on the same images and the same noise.

SPEC (Performance) allows bf16 weights for evaluation only where top-1 stays within 0.1 points
of fp32 at every alpha, small alphas included, and bf16 sharpness only where it agrees with
fp32 within the Monte-Carlo standard error. :func:`compare_precisions` measures exactly that
for one (theta_0, theta_1) pair: the whole alpha path on every cache, and general and
layer-wise sharpness, once in the reference precision (strict fp32) and once per candidate,
on the same images and the same noise draws (:mod:`interpsharp.sharpness` seeds the noise
per (seed, draw, parameter), so every precision sees the same z).

The gate (what each verdict row means)
--------------------------------------
A candidate passes for **evaluation** when all three hold:

- ``top1`` (paired flips): at every alpha and on every set, the share of images whose
  correctness differs between the two precisions, image by image (lost + gained) / n, is at
  most ``tolerance`` (config ``outcome.tolerance``; 0.001 allows 1 image in 1000 and none in a
  set of fewer than 1000). It bounds the top-1 difference, since |gained - lost| <= lost +
  gained, so it implies SPEC's "within 0.1 points" and keeps meaning something on small sets,
  where the net difference alone is one image either way: a precision that moves 8 images
  each way has a net difference of 0 and still fails.
- ``outcome_labels``: on every set, the outcome label (failure mode / gain / high gain) and
  alpha* of :func:`interpsharp.metrics.path_metrics` are the same in both precisions.
- ``loss_shape``: on every set ``has_barrier`` is the same, and barrier depth and instability
  differ by at most ``loss_tolerance`` nats (default 0.01, a tenth of the default delta). The
  loss itself may move by a constant offset, which cancels in both.

A candidate passes for **sharpness** at a radius rho when every general (resp. layer-wise)
value has ``|z| <= z_max``, ``z = (candidate - reference) / stderr`` with ``stderr`` the
reference's Monte-Carlo standard error (``z_max = 1``: "within the standard error"). Both
precisions use the same draws, so the difference is the precision's doing, not Monte-Carlo
noise. A value whose standard error is 0 (every draw equal, e.g. layer-wise sharpness at
alpha 0 in ``perturb_finetuned`` mode) passes only if the difference is 0 as well; a NaN
(non-finite draws, or one draw) never passes.

Forms (:data:`FORMS`)
---------------------
``fp32`` is the reference: fp32 weights, inputs and arithmetic, with TF32 switched off for
CUDA matmuls *and* cuDNN convolutions while the check runs (torch leaves TF32 on for
convolutions by default). ``tf32``, ``bf16`` and ``bf16_autocast`` are the ways the pipeline
can run. The two ``*_emulated`` forms exist to decide whether the **delta form** of bf16
(``theta_0 + alpha * (theta_1 - theta_0)``, each part in its own bf16 matmul, summed in
fp32) is worth implementing: a bf16 matmul accumulates in fp32, so
``bf16(x) @ bf16(W0) + alpha * bf16(x) @ bf16(D)`` equals ``bf16(x) @ (bf16(W0) + alpha *
bf16(D))`` in fp32 arithmetic up to fp32 rounding. ``bf16_delta_emulated`` computes the
latter: weights ``bf16(theta_0) + alpha * bf16(theta_1 - theta_0)`` held in fp32, every
module's inputs and outputs rounded to bf16 values. ``bf16_emulated`` does the same with
plain ``bf16(theta(alpha))`` weights; it is the control that shows how close the emulation
comes to the real ``bf16``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from interpsharp.data import EvalCache
from interpsharp.evaluate import normalize_images, pick_device, precision_context, score_images
from interpsharp.interpolate import InterpolationPath
from interpsharp.metrics import OutcomeThresholds, path_keys, path_metrics
from interpsharp.scores import ImageScores
from interpsharp.sharpness import PERTURB_FINETUNED, general_sharpness, layerwise_sharpness
from interpsharp.subsets import select_subset
from interpsharp.tables import write_tsv

#: How theta(alpha) is written into the model: exactly, rounded to bf16 values, or in the delta form.
EXACT, BF16_ROUNDED, BF16_DELTA = "exact", "bf16_rounded", "bf16_delta"


@dataclass(frozen=True)
class Form:
    """One way of computing the classifier: weight/input dtype and the arithmetic around it."""

    name: str
    dtype: torch.dtype
    description: str
    evaluate_precision: str = "fp32"
    autocast: bool = False
    tf32: bool = False
    weights: str = EXACT
    round_activations: bool = False

    @property
    def sharpness_precision(self) -> str:
        """The :mod:`interpsharp.sharpness` precision this form runs sharpness in."""
        return "bf16" if self.dtype == torch.bfloat16 else "fp32"


#: Every form the check knows, by name; ``fp32`` is the reference.
FORMS: dict[str, Form] = {
    each.name: each
    for each in (
        Form("fp32", torch.float32, "fp32 weights and arithmetic, TF32 off (the reference)"),
        Form("tf32", torch.float32, "fp32 weights, TF32 matmuls and convolutions (CUDA only)", tf32=True),
        Form("bf16", torch.bfloat16, "weights and inputs cast to bfloat16 (config precision bf16)", "bf16"),
        Form("bf16_autocast", torch.float32, "fp32 weights, bf16 matmuls under autocast", "bf16_autocast",
             autocast=True),
        Form("bf16_emulated", torch.float32, "fp32 arithmetic on bf16(theta(alpha)) and bf16-rounded activations "
             "(control of the emulation)", weights=BF16_ROUNDED, round_activations=True),
        Form("bf16_delta_emulated", torch.float32, "fp32 arithmetic on bf16(theta_0) + alpha * bf16(theta_1 - theta_0) "
             "and bf16-rounded activations (the delta form)", weights=BF16_DELTA, round_activations=True),
    )
}
REFERENCE = "fp32"

#: Verdict rows that make up the evaluation and the sharpness decision.
EVALUATION_QUANTITIES = ("top1", "outcome_labels", "loss_shape")
SHARPNESS_QUANTITIES = ("general_sharpness", "layerwise_sharpness")

VERDICT_COLUMNS = ("model", "reference", "candidate", "quantity", "rho", "passed", "value", "limit", "statistic", "where")


@dataclass(frozen=True)
class PrecisionGate:
    """The limits of the gate (module docstring): outcome thresholds (``tolerance`` is the
    flip-rate limit), the loss-shape limit in nats, and the sharpness z limit."""

    thresholds: OutcomeThresholds = field(default_factory=lambda: OutcomeThresholds(delta=0.1, xi=0.02, tolerance=0.001))
    loss_tolerance: float = 0.01
    z_max: float = 1.0

    def __post_init__(self) -> None:
        if not self.loss_tolerance >= 0:
            raise ValueError(f"loss_tolerance must be >= 0 nats, got {self.loss_tolerance}")
        if not self.z_max > 0:
            raise ValueError(f"z_max must be > 0, got {self.z_max}")


@dataclass(frozen=True)
class SharpnessSettings:
    """What sharpness to compare: the set (a cache name), its fixed subset of ``n_samples``
    images (all if None), seed, radii and draws; ``layers`` limits the layer-wise sweep and
    ``alphas`` the alphas (None: the path's). Empty radii skip that kind of sharpness."""

    dataset: str
    n_samples: int | None = None
    seed: int = 0
    general_rhos: tuple[float, ...] = (1.0,)
    general_n_iter: int = 20
    layerwise_rhos: tuple[float, ...] = (1.0,)
    layerwise_n_iter: int = 20
    mode: str = PERTURB_FINETUNED
    layers: tuple[str, ...] | None = None
    alphas: tuple[float, ...] | None = None


@dataclass(frozen=True)
class PrecisionReport:
    """Tables of one check (tidy, one row per observation) and the verdicts.

    ``path``: per (candidate, dataset, alpha) accuracies, flips and losses; ``labels``: per
    (candidate, dataset) outcome, alpha*, gain and loss shape in both precisions;
    ``sharpness``: per (candidate, metric, alpha, layer, rho) both values and z; ``verdicts``:
    :data:`VERDICT_COLUMNS`, one row per (candidate, quantity[, rho]).
    """

    path: pd.DataFrame
    labels: pd.DataFrame
    sharpness: pd.DataFrame
    verdicts: pd.DataFrame

    def passed(self, candidate: str, quantity: str = "evaluation") -> bool:
        """The verdict for ``candidate`` on ``quantity`` (``evaluation``, ``sharpness``, or a
        single quantity; every rho must pass for a sharpness quantity)."""
        rows = self.verdicts[(self.verdicts["candidate"] == candidate) & (self.verdicts["quantity"] == quantity)]
        if rows.empty:
            raise KeyError(f"no verdict for candidate {candidate!r} on {quantity!r} (was it measured?)")
        return bool(rows["passed"].all())

    def write(self, directory: str | Path) -> dict[str, Path]:
        """Write ``path.tsv``, ``labels.tsv``, ``sharpness.tsv`` and ``verdicts.tsv`` atomically."""
        directory = Path(directory)
        tables = {"path": self.path, "labels": self.labels, "sharpness": self.sharpness, "verdicts": self.verdicts}
        return {name: write_tsv(table, directory / f"{name}.tsv") for name, table in tables.items()}

    @classmethod
    def combine(cls, reports: Sequence["PrecisionReport"]) -> "PrecisionReport":
        """One report from several (e.g. one per fine-tuned model); every table has a model column."""
        if not reports:
            raise ValueError("no reports to combine")
        return cls(*(pd.concat([getattr(r, name) for r in reports if not getattr(r, name).empty] or
                               [getattr(reports[0], name)], ignore_index=True)
                     for name in ("path", "labels", "sharpness", "verdicts")))

    def summary(self) -> str:
        """The figures as plain text: per model and candidate the top-1 difference, flips and
        loss difference per set and alpha; labels; sharpness z; verdicts; an overview."""
        fmt = {"float_format": lambda v: f"{v:.4g}", "index": False}
        parts = []
        for (model, candidate), rows in self.path.groupby(["model", "candidate"], sort=False):
            shown = rows[["dataset", "alpha", "acc_reference", "acc_candidate", "top1_diff_points", "lost", "gained",
                          "loss_diff"]]
            worst = rows.assign(abs_diff=rows["top1_diff_points"].abs())
            per_set = worst.groupby("dataset", sort=False)["abs_diff"].max()
            per_alpha = worst.groupby("alpha")["abs_diff"].max()
            parts.append(
                f"== {model}: {candidate} against {REFERENCE} (top-1 difference in points, images lost and gained)\n"
                f"   {candidate}: {FORMS[candidate].description}\n"
                + shown.to_string(**fmt)
                + "\nmax |top-1 difference| per set (points): " + ", ".join(f"{k} {v:.2f}" for k, v in per_set.items())
                + "\nmax |top-1 difference| per alpha (points): " + ", ".join(f"{k:g} {v:.2f}" for k, v in per_alpha.items()))
        if not self.labels.empty:
            cols = ["model", "candidate", "dataset", "outcome_reference", "outcome_candidate", "alpha_star_reference",
                    "alpha_star_candidate", "gain_reference", "gain_candidate", "loss_shape_diff"]
            parts.append("== outcome labels\n" + self.labels[cols].to_string(**fmt))
        if not self.sharpness.empty:
            table = self.sharpness.assign(abs_z=self.sharpness["z"].abs())
            z = table.groupby(["model", "candidate", "metric", "rho"], sort=False)["abs_z"].agg(["max", "median", "count"])
            parts.append("== sharpness: |candidate - reference| in reference standard errors\n"
                         + z.to_string(float_format=lambda v: f"{v:.3g}"))
        parts.append("== verdicts\n" + self.verdicts.drop(columns=["reference"]).to_string(**fmt))
        named = self.verdicts.assign(quantity=self.verdicts["quantity"] + self.verdicts["rho"].map(
            lambda r: "" if math.isnan(r) else f" rho={r:g}"))
        overview = named.pivot(index=["model", "candidate"], columns="quantity", values="passed")
        overview = overview[list(dict.fromkeys(named["quantity"]))].loc[list(dict.fromkeys(
            zip(named["model"], named["candidate"])))]
        parts.append("== passed?\n" + overview.to_string())
        return "\n\n".join(parts)


# -- bf16 emulation ---------------------------------------------------------------------------

def bf16_round(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` rounded to the nearest bfloat16 value (ties to even), kept in its dtype."""
    return tensor.to(torch.bfloat16).to(tensor.dtype)


class Bf16RoundedPath(InterpolationPath):
    """``bf16(theta(alpha))`` held in fp32: the weights ``model.to(torch.bfloat16)`` holds.

    Shares the endpoints of ``path`` instead of copying them (a ViT-B/32 pair is 700 MB).
    """

    def __init__(self, path: InterpolationPath) -> None:
        # Not super().__init__: it would copy both endpoints.
        self.theta_0, self.theta_1 = path.theta_0, path.theta_1

    def point(self, name: str, alpha: float) -> torch.Tensor:
        return bf16_round(super().point(name, alpha))


class Bf16DeltaPath(Bf16RoundedPath):
    """The delta form's weights, ``bf16(theta_0) + alpha * bf16(theta_1 - theta_0)``, in fp32:
    the small fine-tuning change keeps its own bf16 exponent instead of vanishing in theta_0's
    spacing (0.4-0.8 % of |w|)."""

    def point(self, name: str, alpha: float) -> torch.Tensor:
        w0 = self.theta_0[name]
        return bf16_round(w0) + float(alpha) * bf16_round(self.theta_1[name] - w0)


def _round_values(values: object, memo: dict[int, torch.Tensor]) -> object:
    if isinstance(values, torch.Tensor) and values.is_floating_point():
        # One rounded tensor per input tensor: attention's (x, x, x) stays one tensor, so it
        # takes the same (self-attention) code path as without the hook.
        if id(values) not in memo:
            memo[id(values)] = bf16_round(values)
        return memo[id(values)]
    if isinstance(values, tuple):
        return tuple(_round_values(v, memo) for v in values)
    return values


@contextlib.contextmanager
def bf16_activations(model: nn.Module) -> Iterator[nn.Module]:
    """Round every module's floating inputs and outputs to bf16 values while inside.

    With fp32 weights this emulates bf16 storage of activations around fp32 arithmetic,
    which is what a bf16 matmul with fp32 accumulation does.
    """
    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(lambda _m, args: _round_values(args, {})))
        handles.append(module.register_forward_hook(lambda _m, _args, out: _round_values(out, {})))
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()


# -- running one form -------------------------------------------------------------------------

def resolve_form(name: str, device: torch.device) -> Form:
    """The form ``name``, refused where it cannot run (``tf32`` off CUDA)."""
    if name not in FORMS:
        raise ValueError(f"unknown precision {name!r}; choose one of {', '.join(FORMS)}")
    chosen = FORMS[name]
    if chosen.tf32 and device.type != "cuda":
        raise ValueError(f"{name!r} changes CUDA matmuls only; on {device.type} it would be fp32 again: leave it out")
    return chosen


def path_for(chosen: Form, path: InterpolationPath) -> InterpolationPath:
    """The path that writes ``chosen``'s weights for theta(alpha)."""
    if chosen.weights == EXACT:
        return path
    return {BF16_ROUNDED: Bf16RoundedPath, BF16_DELTA: Bf16DeltaPath}[chosen.weights](path)


@contextlib.contextmanager
def applied(chosen: Form, model: nn.Module, device: torch.device) -> Iterator[None]:
    """Run the body in ``chosen``'s arithmetic: TF32 flags, autocast, activation rounding.

    The TF32 flags are set either way (off for every form but ``tf32``) and restored after.
    """
    matmul, cudnn = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high" if chosen.tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = chosen.tf32
    try:
        with contextlib.ExitStack() as stack:
            if chosen.round_activations:
                stack.enter_context(bf16_activations(model))
            if chosen.autocast:
                stack.enter_context(precision_context(device, "bf16_autocast"))
            yield
    finally:
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.allow_tf32 = cudnn


def paired_flips(reference: np.ndarray, candidate: np.ndarray) -> tuple[int, int]:
    """(lost, gained): images correct in the reference only, and in the candidate only."""
    reference, candidate = np.asarray(reference, dtype=bool), np.asarray(candidate, dtype=bool)
    if reference.shape != candidate.shape:
        raise ValueError(f"paired flips need the same images: {reference.shape} vs {candidate.shape}")
    return int((reference & ~candidate).sum()), int((~reference & candidate).sum())


def sharpness_z(diff: float, stderr: float) -> float:
    """``diff / stderr``; 0 when both are 0, +-inf for a difference with no Monte-Carlo error."""
    if math.isnan(diff) or math.isnan(stderr):
        return math.nan
    if stderr == 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return diff / stderr


# -- the check --------------------------------------------------------------------------------

def compare_precisions(
    model: nn.Module,
    path: InterpolationPath,
    caches: Mapping[str, EvalCache],
    alphas: Iterable[float],
    candidates: Sequence[str] = ("bf16",),
    sharpness: SharpnessSettings | None = None,
    gate: PrecisionGate | None = None,
    model_name: str = "model",
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> PrecisionReport:
    """Evaluate the path (and sharpness) in fp32 and in each candidate; compare; give verdicts.

    ``model`` is a classifier of ``path``'s architecture; it is overwritten (and cast) in place
    and left in an unspecified state. ``alphas`` must include 0 and 1 (outcome labels refer to
    both). ``sharpness`` None skips sharpness. Works on any device; ``tf32`` needs CUDA.
    """
    gate = gate or PrecisionGate()
    device = pick_device(device)
    alphas = sorted({float(a) for a in alphas})
    if not alphas or alphas[0] != 0.0 or alphas[-1] != 1.0:
        raise ValueError(f"alphas must include 0 and 1 (outcome labels and alpha* refer to both), got {alphas}")
    if not caches:
        raise ValueError("no evaluation caches given")
    # fp32 may be a candidate too: fp32 against itself measures run-to-run nondeterminism.
    forms = [resolve_form(REFERENCE, device)] + [resolve_form(name, device) for name in dict.fromkeys(candidates)]
    if len(forms) < 2:
        raise ValueError(f"no candidate precision given; choose from {', '.join(n for n in FORMS if n != REFERENCE)}")
    if sharpness is not None and sharpness.dataset not in caches:
        raise ValueError(f"sharpness set {sharpness.dataset!r} is not one of the caches ({', '.join(caches)})")
    path.require_sets_every_tensor_of(model)
    model.to(device).eval()

    # Keyed by position in ``forms`` (0 = reference), so that fp32 as a candidate is computed again.
    scores: dict[tuple[int, str, float], ImageScores] = {}
    bar = tqdm(total=len(forms) * len(alphas), desc=f"check-precision {model_name}", unit="alpha", disable=not progress)
    for i, chosen in enumerate(forms):
        written = path_for(chosen, path)
        model.to(dtype=chosen.dtype)
        with applied(chosen, model, device):
            for alpha in alphas:
                written.load_into(model, alpha)
                for name, cache in caches.items():
                    scores[(i, name, alpha)] = score_images(model, cache, batch_size, device, chosen.evaluate_precision,
                                                            progress=False)
                bar.update()
    bar.close()

    path_table = _path_comparison(scores, forms, caches, alphas, model_name, gate)
    labels = _label_comparison(scores, forms, caches, alphas, model_name, gate)
    sharp = (
        _sharpness_comparison(model, path, caches, alphas, forms, sharpness, model_name, batch_size, device, progress)
        if sharpness is not None else pd.DataFrame(columns=list(SHARPNESS_COLUMNS))
    )
    verdicts = gate_verdicts(path_table, labels, sharp, gate)
    return PrecisionReport(path_table, labels, sharp, verdicts)


def _path_comparison(
    scores: Mapping[tuple[int, str, float], ImageScores],
    forms: Sequence[Form],
    caches: Mapping[str, EvalCache],
    alphas: Sequence[float],
    model_name: str,
    gate: PrecisionGate,
) -> pd.DataFrame:
    rows = []
    for i, chosen in enumerate(forms[1:], start=1):
        for name in caches:
            for alpha in alphas:
                ref, cand = scores[(0, name, alpha)], scores[(i, name, alpha)]
                lost, gained = paired_flips(ref.correct, cand.correct)
                r, c = ref.summary(), cand.summary()
                rows.append({
                    "model": model_name, "dataset": name, "alpha": alpha, "reference": REFERENCE,
                    "candidate": chosen.name, "n": r.n, "acc_reference": r.accuracy, "acc_candidate": c.accuracy,
                    "top1_diff_points": 100.0 * (gained - lost) / r.n,
                    "lost": lost, "gained": gained, "flips": lost + gained, "flip_rate": (lost + gained) / r.n,
                    "loss_reference": r.loss, "loss_candidate": c.loss, "loss_diff": c.loss - r.loss,
                    "tolerance": gate.thresholds.tolerance,
                })
    return pd.DataFrame(rows)


def _path_rows(scores: Mapping[tuple[int, str, float], ImageScores], index: int, caches: Iterable[str],
               alphas: Sequence[float], model_name: str) -> pd.DataFrame:
    """The tidy path table (``interpsharp evaluate``'s columns) of one form."""
    rows = []
    for name in caches:
        for alpha in alphas:
            result = scores[(index, name, alpha)].summary()
            rows.append((model_name, name, alpha, "accuracy", result.accuracy, result.n))
            rows.append((model_name, name, alpha, "loss", result.loss, result.n))
    return pd.DataFrame(rows, columns=["model", "dataset", "alpha", "metric", "value", "n"])


LABEL_FIELDS = ("outcome", "alpha_star", "gain", "has_barrier", "barrier_depth", "instability")


def _label_comparison(
    scores: Mapping[tuple[int, str, float], ImageScores],
    forms: Sequence[Form],
    caches: Mapping[str, EvalCache],
    alphas: Sequence[float],
    model_name: str,
    gate: PrecisionGate,
) -> pd.DataFrame:
    reference = _path_rows(scores, 0, caches, alphas, model_name)
    return pd.concat([compare_labels(reference, _path_rows(scores, i, caches, alphas, model_name), gate, chosen.name)
                      for i, chosen in enumerate(forms[1:], start=1)], ignore_index=True)


def compare_labels(reference: pd.DataFrame, candidate: pd.DataFrame, gate: PrecisionGate,
                   candidate_name: str = "candidate") -> pd.DataFrame:
    """Outcome, alpha*, gain and loss shape of two path tables of the same paths side by side.

    Path tables have ``interpsharp evaluate``'s columns (``model, dataset[, split], alpha,
    metric, value[, n]``); one row per path (model, dataset[, split]) comes back with ``<field>_reference`` and
    ``<field>_candidate`` for each of :data:`LABEL_FIELDS`, ``labels_unchanged`` (outcome and
    alpha* equal), ``barrier_unchanged`` and ``loss_shape_diff`` (the larger of the barrier
    depth and instability changes, nats).
    """
    keys = path_keys(reference)
    if path_keys(candidate) != keys:
        raise ValueError(f"the two path tables have different key columns: {keys} vs {path_keys(candidate)}")
    ref = path_metrics(reference, gate.thresholds).set_index(keys)[list(LABEL_FIELDS)]
    cand = path_metrics(candidate, gate.thresholds).set_index(keys)[list(LABEL_FIELDS)]
    if set(ref.index) != set(cand.index):
        raise ValueError(f"the two path tables hold different paths: {sorted(set(ref.index) ^ set(cand.index))}")
    rows = []
    for index in ref.index:
        row = {**dict(zip(keys, index if isinstance(index, tuple) else (index,))), "reference": REFERENCE,
               "candidate": candidate_name}
        for key in LABEL_FIELDS:
            row[f"{key}_reference"] = ref.loc[index, key]
            row[f"{key}_candidate"] = cand.loc[index, key]
        row["labels_unchanged"] = bool(row["outcome_reference"] == row["outcome_candidate"]
                                       and row["alpha_star_reference"] == row["alpha_star_candidate"])
        row["loss_shape_diff"] = max(abs(row["barrier_depth_candidate"] - row["barrier_depth_reference"]),
                                     abs(row["instability_candidate"] - row["instability_reference"]))
        row["barrier_unchanged"] = bool(row["has_barrier_reference"] == row["has_barrier_candidate"])
        rows.append({**row, "delta": gate.thresholds.delta, "xi": gate.thresholds.xi,
                     "tolerance": gate.thresholds.tolerance, "loss_tolerance": gate.loss_tolerance})
    return pd.DataFrame(rows)


SHARPNESS_COLUMNS = (
    "model", "dataset", "metric", "alpha", "layer", "rho", "reference", "candidate", "value_reference",
    "value_candidate", "diff", "stderr_reference", "stderr_candidate", "z", "n", "n_iter",
    "n_nonfinite_reference", "n_nonfinite_candidate", "mode", "seed",
)


def _sharpness_comparison(
    model: nn.Module,
    path: InterpolationPath,
    caches: Mapping[str, EvalCache],
    alphas: Sequence[float],
    forms: Sequence[Form],
    settings: SharpnessSettings,
    model_name: str,
    batch_size: int,
    device: torch.device,
    progress: bool,
) -> pd.DataFrame:
    cache = caches[settings.dataset]
    subset = select_subset(len(cache), settings.n_samples, settings.seed)
    images = normalize_images(torch.from_numpy(np.array(cache.images[subset])).to(device), model.preprocess)
    labels = torch.from_numpy(cache.labels[subset]).to(device)
    at = list(settings.alphas) if settings.alphas is not None else list(alphas)
    common = dict(class_subset=cache.class_subset, batch_size=batch_size, model_name=model_name,
                  dataset=settings.dataset, progress=progress, seed=settings.seed)
    tables = []
    for chosen in forms:
        written = path_for(chosen, path)
        model.to(dtype=chosen.dtype)
        parts = []
        with applied(chosen, model, device):
            if settings.general_rhos:
                parts.append(general_sharpness(model, written, at, images, labels, settings.general_rhos,
                                               settings.general_n_iter, precision=chosen.sharpness_precision, **common))
            if settings.layerwise_rhos:
                # Resuming inside a block skips the block's own hook, so the emulation would round
                # a cached pass differently from a resumed one: resume at block inputs only.
                parts.append(layerwise_sharpness(model, written, at, images, labels, settings.layerwise_rhos,
                                                 settings.layerwise_n_iter, mode=settings.mode, layers=settings.layers,
                                                 precision=chosen.sharpness_precision,
                                                 within_blocks=not chosen.round_activations, **common))
        if not parts:
            return pd.DataFrame(columns=list(SHARPNESS_COLUMNS))
        table = pd.concat(parts, ignore_index=True)
        tables.append(table[table["metric"].isin(SHARPNESS_QUANTITIES)])
    keys = ["metric", "alpha", "layer", "rho"]
    rows = []
    for chosen, table in zip(forms[1:], tables[1:]):
        merged = tables[0].merge(table, on=keys, suffixes=("_reference", "_candidate"), validate="one_to_one")
        for r in merged.itertuples(index=False):
            diff = r.value_candidate - r.value_reference
            rows.append({
                "model": model_name, "dataset": settings.dataset, "metric": r.metric, "alpha": r.alpha,
                "layer": r.layer, "rho": r.rho, "reference": REFERENCE, "candidate": chosen.name,
                "value_reference": r.value_reference, "value_candidate": r.value_candidate, "diff": diff,
                "stderr_reference": r.stderr_reference, "stderr_candidate": r.stderr_candidate,
                "z": sharpness_z(diff, r.stderr_reference), "n": r.n_reference, "n_iter": r.n_iter_reference,
                "n_nonfinite_reference": r.n_nonfinite_reference, "n_nonfinite_candidate": r.n_nonfinite_candidate,
                "mode": r.mode_reference, "seed": r.seed_reference,
            })
    return pd.DataFrame(rows, columns=list(SHARPNESS_COLUMNS))


def gate_verdicts(path: pd.DataFrame, labels: pd.DataFrame, sharpness: pd.DataFrame, gate: PrecisionGate) -> pd.DataFrame:
    """The verdict rows (:data:`VERDICT_COLUMNS`) of one model from the comparison tables
    (:class:`PrecisionReport`'s ``path``, ``labels``, ``sharpness``), by the rules in the
    module docstring; candidates in the path table's order, plus an ``evaluation`` and a
    ``sharpness`` row per candidate that pass when all their parts do."""
    if path["model"].nunique() != 1:
        raise ValueError(f"gate_verdicts takes one model's tables, got models {sorted(path['model'].unique())}")
    model_name = path["model"].iloc[0]
    candidates = list(dict.fromkeys(path["candidate"]))
    rows = []

    def add(candidate: str, quantity: str, passed: bool, value: float, limit: float, statistic: str, where: str,
            rho: float = math.nan) -> None:
        rows.append((model_name, REFERENCE, candidate, quantity, rho, bool(passed), float(value), float(limit),
                     statistic, where))

    tol = gate.thresholds.tolerance
    for name in candidates:
        p = path[path["candidate"] == name]
        worst = p.loc[p["flip_rate"].idxmax()]
        add(name, "top1", bool((p["flips"] <= tol * p["n"] + 1e-9).all()), worst["flip_rate"], tol,
            "max over sets and alphas of (lost + gained) / n",
            f"{worst['dataset']} alpha={worst['alpha']:g}: {worst['lost']} lost, {worst['gained']} gained of "
            f"{worst['n']} (top-1 {worst['top1_diff_points']:+.2f} points)")
        lab = labels[labels["candidate"] == name]
        changed = lab[~lab["labels_unchanged"]]
        add(name, "outcome_labels", changed.empty, len(changed), 0, "sets whose outcome label or alpha* changed",
            "; ".join(f"{r.dataset}: {r.outcome_reference} at {r.alpha_star_reference:g} -> "
                      f"{r.outcome_candidate} at {r.alpha_star_candidate:g}" for r in changed.itertuples()) or "none")
        shape = lab.loc[lab["loss_shape_diff"].idxmax()]
        barrier_flips = lab[~lab["barrier_unchanged"]]
        add(name, "loss_shape", barrier_flips.empty and bool((lab["loss_shape_diff"] <= gate.loss_tolerance).all()),
            shape["loss_shape_diff"], gate.loss_tolerance,
            "max over sets of |d barrier depth|, |d instability| (nats); has_barrier must not change",
            f"{shape['dataset']} (max |loss diff| along the path {p['loss_diff'].abs().max():.4g}); "
            f"has_barrier changed on: {', '.join(barrier_flips['dataset']) or 'none'}")
        mine = sharpness[sharpness["candidate"] == name]
        for (metric, rho), group in mine.groupby(["metric", "rho"], sort=False):
            absz = group["z"].abs()
            within = absz <= gate.z_max  # NaN compares False: undecidable values never pass
            at = group.loc[absz.fillna(math.inf).idxmax()]
            add(name, metric, bool(within.all()), absz.fillna(math.inf).max(), gate.z_max,
                "max |(candidate - reference) / reference stderr| over alphas and layers",
                f"alpha={at['alpha']:g} layer={at['layer']}: {at['value_candidate']:.4g} vs {at['value_reference']:.4g} "
                f"+- {at['stderr_reference']:.2g}; {int((~within).sum())} of {len(group)} values outside", rho=rho)
    table = pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))
    summary = []
    for name in candidates:
        mine = table[table["candidate"] == name]
        for quantity, parts in (("evaluation", EVALUATION_QUANTITIES), ("sharpness", SHARPNESS_QUANTITIES)):
            picked = mine[mine["quantity"].isin(parts)]
            if picked.empty:
                continue
            failed = sorted(set(picked.loc[~picked["passed"], "quantity"]))
            summary.append((model_name, REFERENCE, name, quantity, math.nan, not failed, float(len(failed)), 0.0,
                            f"failed parts of {' + '.join(parts)}", ", ".join(failed) or "none"))
    return pd.concat([table, pd.DataFrame(summary, columns=list(VERDICT_COLUMNS))], ignore_index=True)
