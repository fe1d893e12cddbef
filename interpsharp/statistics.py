"""Rank correlations between per-model measures (sharpness, instability...) and OOD gain.

The paper's claims are about orderings of a handful of fine-tuned models (nine), so we report
rank correlations -- Kendall's tau-b and Spearman's rho -- with scipy's p-values and a
bootstrap percentile interval that resamples *models* with replacement. With nine models the
interval is wide; printing it is the point.

Degenerate cases give NaN plus a ``reason`` instead of an exception, because one constant
measure (e.g. a sharpness that is 0 everywhere) must not stop a whole summary table.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

METHODS = ("kendall_tau", "spearman_rho")
MIN_MODELS = 3
# Bounds the (resamples x n x n) sign array of the vectorised Kendall tau to ~32 MB.
_KENDALL_CHUNK_ELEMENTS = 4_000_000


def rank_correlations(
    df: pd.DataFrame,
    x_cols: Sequence[str],
    y_col: str,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    by: Sequence[str] = (),
) -> pd.DataFrame:
    """Kendall tau-b and Spearman rho of each ``x_cols`` column against ``y_col``.

    ``df`` has one row per model (per ``by`` group, e.g. ``by=["dataset"]``). Rows with a NaN
    in x or y are left out of that pair and counted in ``n_missing``. Each (group, x) pair
    draws its resamples from its own ``numpy.random.default_rng(seed)``, so a row does not
    change when other columns are added. Resamples whose x or y is constant have no rank
    correlation and are dropped; ``n_boot_valid`` says how many remained.

    Returns one row per (group, x, method) with columns ``[*by], x, y, method, statistic,
    p_value, ci_low, ci_high, confidence, n, n_missing, n_boot, n_boot_valid, seed, reason``
    (``reason`` is empty unless the statistic or its interval is NaN).
    """
    x_cols = [x_cols] if isinstance(x_cols, str) else list(x_cols)
    by = [by] if isinstance(by, str) else list(by)
    _check_arguments(df, x_cols, y_col, by, n_boot, confidence)
    groups = df.groupby(by, sort=False, dropna=False) if by else [((), df)]
    rows = []
    for group_key, group in groups:
        labels = dict(zip(by, group_key if isinstance(group_key, tuple) else (group_key,)))
        for x_col in x_cols:
            pair = group[[x_col, y_col]].to_numpy(dtype=float)
            complete = ~np.isnan(pair).any(axis=1)
            x, y = pair[complete, 0], pair[complete, 1]
            common = {**labels, "x": x_col, "y": y_col}
            extra = {"confidence": confidence, "n": len(x), "n_missing": int((~complete).sum()), "n_boot": n_boot, "seed": seed}
            for method, result in _correlate(x, y, n_boot, seed, confidence).items():
                rows.append({**common, "method": method, **result, **extra})
    columns = [*by, "x", "y", "method", "statistic", "p_value", "ci_low", "ci_high", "confidence",
               "n", "n_missing", "n_boot", "n_boot_valid", "seed", "reason"]
    return pd.DataFrame(rows, columns=columns)


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row pair of ``x`` and ``y`` (shape ``(B, n)``); NaN for a constant row.

    Vectorised over rows because the bootstrap needs thousands of taus on the same few models,
    where calling scipy once per resample costs more than the arithmetic. Counts every pair
    once: ``tau_b = sum s_x s_y / sqrt(sum s_x^2 * sum s_y^2)`` with ``s = sign(v_i - v_j)``.
    """
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    b, n = x.shape
    out = np.empty(b)
    chunk = max(1, _KENDALL_CHUNK_ELEMENTS // max(1, n * n))
    for start in range(0, b, chunk):
        xs, ys = x[start:start + chunk], y[start:start + chunk]
        sx = np.sign(xs[:, :, None] - xs[:, None, :])
        sy = np.sign(ys[:, :, None] - ys[:, None, :])
        # Sums over the full n x n matrix count each pair twice in all three, which cancels.
        concordance = (sx * sy).sum(axis=(1, 2))
        pairs_x = (sx * sx).sum(axis=(1, 2))
        pairs_y = (sy * sy).sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + chunk] = np.where((pairs_x > 0) & (pairs_y > 0), concordance / np.sqrt(pairs_x * pairs_y), np.nan)
    return out


def spearman_rho(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho (Pearson correlation of average ranks) per row pair; NaN for a constant row."""
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    rx = stats.rankdata(x, axis=1)
    ry = stats.rankdata(y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    constant = (x.min(axis=1) == x.max(axis=1)) | (y.min(axis=1) == y.max(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry).sum(axis=1) / np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    # Rounding can push a perfect correlation a hair past 1.
    return np.where(constant, np.nan, np.clip(rho, -1.0, 1.0))


def _correlate(x: np.ndarray, y: np.ndarray, n_boot: int, seed: int, confidence: float) -> dict[str, dict]:
    """Point estimates, p-values and bootstrap intervals of both methods for one (x, y) pair."""
    n = len(x)
    reason = _degenerate_reason(x, y)
    if reason:
        nan = {"statistic": np.nan, "p_value": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_boot_valid": 0, "reason": reason}
        return {method: dict(nan) for method in METHODS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        point = {"kendall_tau": stats.kendalltau(x, y), "spearman_rho": stats.spearmanr(x, y)}
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    boot = {"kendall_tau": kendall_tau_b(x[idx], y[idx]), "spearman_rho": spearman_rho(x[idx], y[idx])}
    tail = (1 - confidence) / 2
    results = {}
    for method in METHODS:
        valid = boot[method][~np.isnan(boot[method])]
        low, high = (np.quantile(valid, [tail, 1 - tail]) if len(valid) else (np.nan, np.nan))
        results[method] = {
            "statistic": float(point[method].statistic),
            "p_value": float(point[method].pvalue),
            "ci_low": float(low),
            "ci_high": float(high),
            "n_boot_valid": len(valid),
            "reason": "" if len(valid) else "every bootstrap resample was constant in x or y",
        }
    return results


def _degenerate_reason(x: np.ndarray, y: np.ndarray) -> str:
    if len(x) < MIN_MODELS:
        return f"fewer than {MIN_MODELS} models with both values (n={len(x)})"
    if x.min() == x.max():
        return "x is constant across models"
    if y.min() == y.max():
        return "y is constant across models"
    return ""


def _check_arguments(df: pd.DataFrame, x_cols: list[str], y_col: str, by: list[str], n_boot: int, confidence: float) -> None:
    if not x_cols:
        raise ValueError("rank_correlations: x_cols is empty; name at least one column to correlate")
    missing = [c for c in [*x_cols, y_col, *by] if c not in df.columns]
    if missing:
        raise KeyError(f"rank_correlations: table lacks column(s) {', '.join(missing)} (has {', '.join(map(str, df.columns))})")
    non_numeric = [c for c in [*x_cols, y_col] if not pd.api.types.is_numeric_dtype(df[c])]
    if non_numeric:
        raise ValueError(f"rank_correlations: column(s) {', '.join(non_numeric)} are not numeric")
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 1):
        raise ValueError(f"rank_correlations: n_boot must be a positive integer, got {n_boot!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"rank_correlations: confidence must be in (0, 1), got {confidence}")
