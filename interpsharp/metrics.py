"""Path metrics: what an interpolation path's loss and accuracy curves say about it.

Input is the tidy path table the evaluation writes: one row per (path, alpha, metric) with
columns ``model, dataset, alpha, metric, value`` (``metric`` is ``accuracy`` or ``loss``),
optionally ``n`` (evaluation-set size) and ``split`` (``all``, or a part of the set such as the
``selection`` and ``heldout`` halves of :mod:`interpsharp.subsets`). A layer-wise path adds a
``layer`` column and a pruned path a ``mask_seed`` column; a *path* is one value of every key
column present (:data:`KEY_COLUMNS`), so one function serves all three kinds of table.

Definitions (SPEC, WiSE-FT direction: alpha 0 is the zero-shot model theta_0):

- instability (Def. 1): ``max_alpha L(alpha) - (L(0) + L(1)) / 2``;
- barrier depth (Eq. 1): ``max_alpha L(alpha) - L(0)``; a barrier exists when depth >= delta;
- gain (Eq. 2): ``max_alpha A(alpha) - A(0)``, ``alpha_star = argmax_alpha A(alpha)``
  (smallest alpha on ties);
- outcome: ``failure_mode`` when no alpha > 0 beats A(0) by more than ``tolerance``
  (alpha_star is then reported as 0, and gain is the max, at most ``tolerance``),
  ``high_gain`` when gain >= xi, otherwise ``gain``.

The maxima run over the alphas that were evaluated; a path's grid is its own business, but
both endpoints must be on it because every definition refers to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("model", "dataset", "alpha", "metric", "value")
#: Columns that identify one path, in output order; ``model`` and ``dataset`` are required.
KEY_COLUMNS = ("model", "dataset", "split", "layer", "mask_seed")

FAILURE_MODE = "failure_mode"
GAIN = "gain"
HIGH_GAIN = "high_gain"
#: Label of a pruned path of a model with no straggler layer: it is the original path itself.
NOTHING_PRUNED = "no straggler: nothing pruned"

#: Readings of Def. 1.1's reference loss (config ``layerwise_interpolation.reference``):
#: ``original_models`` is the paper's text, (L(theta_0) + L(theta_1)) / 2 of the whole models;
#: ``path_endpoints`` averages the layer-wise path's own endpoints (theta_0, and theta_0 with
#: layer i from theta_1).
ORIGINAL_MODELS = "original_models"
PATH_ENDPOINTS = "path_endpoints"
REFERENCES = (ORIGINAL_MODELS, PATH_ENDPOINTS)

# Accuracies are ratios of integers and pass through TSV text, so a gain meant to equal xi
# can come out as 0.04999999999999999. Threshold comparisons and argmax ties forgive this much.
_ROUND_OFF = 1e-12
# Alphas come from linspace grids or TSV text; 1e-9 is far below any grid step we use.
_ALPHA_ATOL = 1e-9


class PathTableError(ValueError):
    """A path table that lacks columns, endpoints or metrics, or holds duplicate rows."""


@dataclass(frozen=True)
class OutcomeThresholds:
    """The config values that turn path numbers into labels; written next to every label.

    ``delta``: barrier depth (loss) that counts as a barrier. ``xi``: accuracy gain that counts
    as high gain. ``tolerance``: accuracy improvement over the zero-shot model that still
    counts as no improvement (evaluation noise), so a path is a failure mode rather than a gain.
    """

    delta: float
    xi: float
    tolerance: float = 0.0

    def __post_init__(self) -> None:
        if not self.delta > 0:
            raise ValueError(f"OutcomeThresholds: delta must be > 0 (Eq. 1), got {self.delta}")
        if not self.tolerance >= 0:
            raise ValueError(f"OutcomeThresholds: tolerance must be >= 0, got {self.tolerance}")
        if not self.xi > self.tolerance:
            # Otherwise a path could be a failure mode and a high gain at once.
            raise ValueError(f"OutcomeThresholds: xi ({self.xi}) must exceed tolerance ({self.tolerance})")


def path_keys(paths: pd.DataFrame) -> list[str]:
    """The key columns present in ``paths``, in :data:`KEY_COLUMNS` order."""
    return [c for c in KEY_COLUMNS if c in paths.columns]


def loss_path_metrics(paths: pd.DataFrame, delta: float) -> pd.DataFrame:
    """Instability, barrier depth and ``has_barrier`` per path, from the ``loss`` rows.

    Columns: keys, ``instability, barrier_depth, has_barrier, loss_zero_shot,
    loss_fine_tuned, loss_max, alpha_loss_max, n_alphas, [n,] delta``.
    """
    if not delta > 0:
        raise ValueError(f"delta must be > 0 (Eq. 1), got {delta}")
    rows = []
    for key, alpha, loss, extra in _paths_of(paths, "loss"):
        l0, l1 = loss[0], loss[-1]
        i_max = int(np.argmax(loss))
        depth = loss[i_max] - l0
        rows.append({
            **key,
            "instability": loss[i_max] - (l0 + l1) / 2,
            "barrier_depth": depth,
            "has_barrier": bool(depth >= delta - _ROUND_OFF),
            "loss_zero_shot": l0,
            "loss_fine_tuned": l1,
            "loss_max": loss[i_max],
            "alpha_loss_max": alpha[i_max],
            "n_alphas": len(alpha),
            **extra,
            "delta": float(delta),
        })
    return pd.DataFrame(rows)


def accuracy_path_metrics(paths: pd.DataFrame, thresholds: OutcomeThresholds) -> pd.DataFrame:
    """Gain, alpha_star and the outcome label per path, from the ``accuracy`` rows.

    Columns: keys, ``gain, alpha_star, acc_zero_shot, acc_fine_tuned, acc_best, acc_at_alpha_star,
    outcome, n_alphas, [n,] xi, tolerance``. ``acc_best`` is ``max_alpha A`` (so gain =
    acc_best - acc_zero_shot always); in a failure mode it may exceed ``acc_at_alpha_star``
    (= acc_zero_shot) by at most ``tolerance``.
    """
    rows = []
    for key, alpha, acc, extra in _paths_of(paths, "accuracy"):
        a0 = acc[0]
        best = acc.max()
        gain = best - a0
        outcome, i_star = choose_alpha_star(acc, thresholds)
        rows.append({
            **key,
            "gain": gain,
            "alpha_star": alpha[i_star],
            "acc_zero_shot": a0,
            "acc_fine_tuned": acc[-1],
            "acc_best": best,
            "acc_at_alpha_star": acc[i_star],
            "outcome": outcome,
            "n_alphas": len(alpha),
            **extra,
            "xi": thresholds.xi,
            "tolerance": thresholds.tolerance,
        })
    return pd.DataFrame(rows)


def choose_alpha_star(acc: np.ndarray, thresholds: OutcomeThresholds) -> tuple[str, int]:
    """Outcome label and index of alpha* of one accuracy path (alphas ascending, index 0 is
    alpha = 0): the rule of :func:`accuracy_path_metrics`, usable on any part of a set."""
    acc = np.asarray(acc, dtype=float)
    best = acc.max()
    gain = best - acc[0]
    if gain <= thresholds.tolerance + _ROUND_OFF:
        # alpha = 0 itself never beats A(0), so "no alpha > 0 beats it" is a test on the max.
        return FAILURE_MODE, 0
    outcome = HIGH_GAIN if gain >= thresholds.xi - _ROUND_OFF else GAIN
    return outcome, int(np.flatnonzero(acc >= best - _ROUND_OFF)[0])  # smallest alpha on ties


def path_metrics(paths: pd.DataFrame, thresholds: OutcomeThresholds) -> pd.DataFrame:
    """Loss and accuracy metrics side by side, one row per path; every path needs both metrics
    (use :func:`loss_path_metrics` or :func:`accuracy_path_metrics` for a table with one).

    Columns: keys, ``instability, barrier_depth, has_barrier, gain, alpha_star, acc_zero_shot,
    acc_fine_tuned, acc_best, acc_at_alpha_star, outcome, loss_zero_shot, loss_fine_tuned,
    loss_max, alpha_loss_max, n_alphas, [n,] delta, xi, tolerance``.
    """
    keys = path_keys(_validated(paths))
    loss = loss_path_metrics(paths, thresholds.delta)
    acc = accuracy_path_metrics(paths, thresholds)
    shared = [c for c in ("n_alphas", "n") if c in loss.columns]
    merged = loss.merge(acc.drop(columns=shared), on=keys, how="inner", validate="one_to_one")
    order = keys + [
        "instability", "barrier_depth", "has_barrier", "gain", "alpha_star", "acc_zero_shot",
        "acc_fine_tuned", "acc_best", "acc_at_alpha_star", "outcome", "loss_zero_shot",
        "loss_fine_tuned", "loss_max", "alpha_loss_max", *shared, "delta", "xi", "tolerance",
    ]
    return merged[order]


def layerwise_instability(
    layerwise_paths: pd.DataFrame,
    reference: str = ORIGINAL_MODELS,
    endpoints: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Def. 1.1 per (model, dataset[, split], layer[, mask_seed]) from a layer-wise path table:
    ``max_alpha L_i(alpha)`` minus a reference loss.

    ``reference = "original_models"`` (the paper's text): ``(L(theta_0) + L(theta_1)) / 2`` of
    the *original* models, read from ``endpoints``, the whole paths' loss metrics
    (:func:`loss_path_metrics` of the evaluation table: ``loss_zero_shot``, ``loss_fine_tuned``
    per model, dataset[, split]). ``reference = "path_endpoints"``: the layer-wise path's own
    values at alpha 0 (theta_0, the same for every layer) and 1 (theta_0 with only layer i from
    theta_1), an alternative reading SPEC's earlier wording allowed.

    ``instability_at_alpha0`` is the instability every layer has at least: the layer-wise
    path starts at theta_0 for every layer, so its maximum is never below ``L(theta_0)``. When
    the fine-tuned model's loss is lower than the zero-shot model's, the original models' mean
    lies below ``L(theta_0)``, and once ``L(theta_0) - reference > delta`` *every* layer exceeds
    delta by construction (see :func:`stragglers_by_interpolation`).

    Columns: keys, ``instability, instability_at_alpha0, reference, reference_loss,
    loss_alpha0, loss_alpha1, loss_max, alpha_loss_max, n_alphas[, n]``; layers keep the
    table's order (forward order when the evaluation wrote it).
    """
    if reference not in REFERENCES:
        raise ValueError(f"unknown Def. 1.1 reference {reference!r}; choose one of {', '.join(REFERENCES)}")
    if "layer" not in _validated(layerwise_paths).columns:
        raise PathTableError("layer-wise path table has no 'layer' column; pass the layer-wise evaluation table")
    originals = _original_losses(endpoints, layerwise_paths) if reference == ORIGINAL_MODELS else None
    rows = []
    for key, alpha, loss, extra in _paths_of(layerwise_paths, "loss"):
        i_max = int(np.argmax(loss))
        if originals is None:
            reference_loss = (loss[0] + loss[-1]) / 2
        else:
            whole = tuple(key.get(c) for c in originals.index.names)
            if whole not in originals.index:
                raise PathTableError(f"no whole-path losses for {_describe(dict(zip(originals.index.names, whole)))}: "
                                     "Def. 1.1 (original_models) needs L(theta_0) and L(theta_1) of that model and set")
            reference_loss = float(originals.loc[whole])
        rows.append({
            **key,
            "instability": loss[i_max] - reference_loss,
            "instability_at_alpha0": loss[0] - reference_loss,
            "reference": reference,
            "reference_loss": reference_loss,
            "loss_alpha0": loss[0],
            "loss_alpha1": loss[-1],
            "loss_max": loss[i_max],
            "alpha_loss_max": alpha[i_max],
            "n_alphas": len(alpha),
            **extra,
        })
    return pd.DataFrame(rows)


def stragglers_by_interpolation(
    layerwise_paths: pd.DataFrame,
    delta: float,
    reference: str = ORIGINAL_MODELS,
    endpoints: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Layers whose layer-wise instability (:func:`layerwise_instability`) exceeds ``delta``
    (Def. 1.2), with ``delta`` as a column. "Exceeds" is strict: a layer exactly at delta is not
    a straggler.

    Layers where the criterion is degenerate (:func:`degenerate_interpolation_paths`: the
    layer's path exceeds delta already at alpha = 0, theta_0) are not flagged: under the
    original-models reading that happens to every layer of a model at once, the flag would carry
    no information about any layer, and pruning every layer is not what Algorithm 1 means.
    """
    if not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta}")
    table = layerwise_instability(layerwise_paths, reference, endpoints)
    informative = ~degenerate_interpolation_paths(table, delta)
    stragglers = table[informative & (table["instability"] > delta + _ROUND_OFF)].reset_index(drop=True)
    return stragglers.assign(delta=float(delta))


#: Why a path's stragglers by interpolation are left out when its criterion is degenerate.
DEGENERATE_INTERPOLATION = ("L(theta_0) exceeds the reference loss by more than delta, so every layer's "
                            "layer-wise path (which starts at theta_0) exceeds delta by construction")


def degenerate_interpolation_paths(instability: pd.DataFrame, delta: float) -> pd.Series:
    """Boolean per row of a :func:`layerwise_instability` table: True where the row's
    ``instability_at_alpha0`` exceeds ``delta``, so Def. 1.2 would flag the layer whatever its
    path does after theta_0 (:data:`DEGENERATE_INTERPOLATION`). Under the original-models
    reading all layers of a model share this value, so it is all of them or none."""
    return instability["instability_at_alpha0"] > delta + _ROUND_OFF


def _original_losses(endpoints: pd.DataFrame | None, layerwise_paths: pd.DataFrame) -> pd.Series:
    """``(L(theta_0) + L(theta_1)) / 2`` indexed by the whole path's keys (model, dataset[, split])."""
    if endpoints is None:
        raise PathTableError("Def. 1.1 with reference 'original_models' needs the whole paths' losses "
                             "(endpoints = loss_path_metrics of the evaluation table)")
    keys = [c for c in ("model", "dataset", "split") if c in endpoints.columns and c in layerwise_paths.columns]
    missing = [c for c in ("model", "dataset", "loss_zero_shot", "loss_fine_tuned") if c not in endpoints.columns]
    if missing:
        raise PathTableError(f"whole-path losses lack column(s) {', '.join(missing)}; pass loss_path_metrics of the evaluation table")
    mean = (endpoints["loss_zero_shot"].astype(float) + endpoints["loss_fine_tuned"].astype(float)) / 2
    return pd.Series(mean.to_numpy(), index=pd.MultiIndex.from_frame(endpoints[keys].astype(object)))


def _validated(paths: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in paths.columns]
    if missing:
        raise PathTableError(
            f"path table lacks column(s) {', '.join(missing)}; it needs {', '.join(REQUIRED_COLUMNS)} "
            f"(has {', '.join(map(str, paths.columns))})"
        )
    for column in ("alpha", "value"):
        if not pd.api.types.is_numeric_dtype(paths[column]):
            raise PathTableError(f"path table column {column!r} must be numeric, got dtype {paths[column].dtype}")
    return paths


def _paths_of(paths: pd.DataFrame, metric: str) -> Iterator[tuple[dict, np.ndarray, np.ndarray, dict]]:
    """Yield ``(key dict, sorted alphas, values, extra columns)`` for each path's ``metric`` rows.

    Raises if any path lacks the metric, has duplicate alphas, NaN values, alphas outside
    [0, 1], or misses an endpoint: each error names the path.
    """
    keys = path_keys(_validated(paths))
    rows = paths[paths["metric"] == metric]
    all_paths = paths[keys].drop_duplicates()
    if len(rows[keys].drop_duplicates()) != len(all_paths):
        lacking = all_paths.merge(rows[keys].drop_duplicates(), on=keys, how="left", indicator=True)
        first = lacking[lacking["_merge"] == "left_only"].iloc[0]
        found = ", ".join(sorted(map(str, paths["metric"].unique())))
        raise PathTableError(f"path {_describe(dict(first[keys]))} has no {metric!r} rows (metrics in the table: {found})")
    for key_values, group in rows.groupby(keys, sort=False, dropna=False):
        key = dict(zip(keys, key_values))
        alpha = group["alpha"].to_numpy(dtype=float)
        value = group["value"].to_numpy(dtype=float)
        order = np.argsort(alpha, kind="stable")
        alpha, value = alpha[order], value[order]
        _check_path(key, metric, alpha, value)
        extra = {}
        if "n" in group.columns:
            sizes = group["n"].unique()
            if len(sizes) != 1:
                raise PathTableError(f"path {_describe(key)}: {metric} rows mix evaluation sizes n = {sorted(sizes)}")
            extra["n"] = sizes[0]
        yield key, alpha, value, extra


def _check_path(key: dict, metric: str, alpha: np.ndarray, value: np.ndarray) -> None:
    where = f"path {_describe(key)} ({metric})"
    if np.isnan(alpha).any() or np.isnan(value).any():
        raise PathTableError(f"{where} has NaN alphas or values; re-run its evaluation")
    if alpha[0] < -_ALPHA_ATOL or alpha[-1] > 1 + _ALPHA_ATOL:
        raise PathTableError(f"{where} has alphas outside [0, 1]: {alpha[0]:g} .. {alpha[-1]:g}")
    if (np.diff(alpha) <= _ALPHA_ATOL).any():
        dup = alpha[1:][np.diff(alpha) <= _ALPHA_ATOL][0]
        raise PathTableError(f"{where} has several rows at alpha = {dup:g}; add the key column that tells them apart")
    absent = [name for name, ok in (("0", abs(alpha[0]) <= _ALPHA_ATOL), ("1", abs(alpha[-1] - 1) <= _ALPHA_ATOL)) if not ok]
    if absent:
        raise PathTableError(f"{where} lacks alpha {' and '.join(absent)}; every path must include both endpoints")


def _describe(key: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in key.items())
