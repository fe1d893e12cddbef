"""Path metrics: what an interpolation path's loss and accuracy curves say about it.

Input is the tidy path table the evaluation writes: one row per (path, alpha, metric) with
columns ``model, dataset, alpha, metric, value`` (``metric`` is ``accuracy`` or ``loss``),
optionally ``n`` (evaluation-set size). A layer-wise path adds a ``layer`` column and a pruned
path a ``mask_seed`` column; a *path* is one value of every key column present
(:data:`KEY_COLUMNS`), so one function serves all three kinds of table.

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
KEY_COLUMNS = ("model", "dataset", "layer", "mask_seed")

FAILURE_MODE = "failure_mode"
GAIN = "gain"
HIGH_GAIN = "high_gain"

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
        if best - a0 <= thresholds.tolerance + _ROUND_OFF:
            # alpha = 0 itself never beats A(0), so "no alpha > 0 beats it" is a test on the max.
            outcome, i_star = FAILURE_MODE, 0
        else:
            outcome = HIGH_GAIN if gain >= thresholds.xi - _ROUND_OFF else GAIN
            i_star = int(np.flatnonzero(acc >= best - _ROUND_OFF)[0])  # smallest alpha on ties
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


def layerwise_instability(layerwise_paths: pd.DataFrame) -> pd.DataFrame:
    """Def. 1.1 per (model, dataset, layer[, mask_seed]) from a layer-wise path table.

    The endpoints average uses the layer-wise path's *own* values at alpha 0 and 1: alpha 0 is
    theta_0 (the same for every layer), alpha 1 is theta_0 with only layer i taken from theta_1
    -- not the fine-tuned model. The paper's "average loss of the original models" is read this
    way because these are the two models the layer-wise line connects.

    Columns: keys, ``instability, loss_alpha0, loss_alpha1, loss_max, alpha_loss_max,
    n_alphas[, n]``; layers keep the table's order (forward order when the evaluation wrote it).
    """
    if "layer" not in _validated(layerwise_paths).columns:
        raise PathTableError("layer-wise path table has no 'layer' column; pass the layer-wise evaluation table")
    rows = []
    for key, alpha, loss, extra in _paths_of(layerwise_paths, "loss"):
        i_max = int(np.argmax(loss))
        rows.append({
            **key,
            "instability": loss[i_max] - (loss[0] + loss[-1]) / 2,
            "loss_alpha0": loss[0],
            "loss_alpha1": loss[-1],
            "loss_max": loss[i_max],
            "alpha_loss_max": alpha[i_max],
            "n_alphas": len(alpha),
            **extra,
        })
    return pd.DataFrame(rows)


def stragglers_by_interpolation(layerwise_paths: pd.DataFrame, delta: float) -> pd.DataFrame:
    """Layers whose layer-wise instability exceeds ``delta`` (Def. 1.2), with ``delta`` as a column.

    "Exceeds" is strict, so a layer exactly at delta is not a straggler.
    """
    if not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta}")
    table = layerwise_instability(layerwise_paths)
    stragglers = table[table["instability"] > delta + _ROUND_OFF].reset_index(drop=True)
    return stragglers.assign(delta=float(delta))


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
