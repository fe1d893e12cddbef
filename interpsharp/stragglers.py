"""Straggler layers by sharpness, and their agreement with the other criterion.

A straggler *by sharpness* is a layer whose layer-wise sharpness is ~0 (SPEC); the paper finds
them on the fine-tuned model (alpha = 1) with 5 noise draws and then prunes them
(:mod:`interpsharp.pruning`, Algorithm 1). Stragglers *by interpolation* (Def. 1.2) live in
:mod:`interpsharp.metrics`; this module only compares the two sets. It reads and writes tables
only (no torch), so the jobs that flag stragglers start in a fraction of a second.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

#: Columns :func:`stragglers_by_sharpness` groups by, when present.
GROUP_COLUMNS = ("model", "dataset", "mode", "rho")

# Alphas arrive from linspace grids and TSV text; far below any grid step we use.
_ALPHA_ATOL = 1e-9


def stragglers_by_sharpness(
    layerwise: pd.DataFrame,
    eps: float,
    eps_rel: float,
    alpha: float = 1.0,
    k: float = 2.0,
    metric: str = "layerwise_sharpness",
) -> pd.DataFrame:
    """Flag layers whose layer-wise sharpness at ``alpha`` is ~0, taking the Monte-Carlo error
    into account.

    A layer is a straggler when its estimate is both *small* and *consistent with zero*:

    - ``|S| <= threshold = max(eps, eps_rel * largest)``, ``largest`` being the largest layer's
      value in the same group (model, dataset, mode, rho);
    - ``|S| <= k * stderr``: zero lies within ``k`` standard errors of the estimate.

    The second condition is why: with a few draws the standard error of a layer's estimate can
    exceed the threshold itself, and then "under the threshold" says nothing. A layer is
    **undecidable** when its interval ``|S| +- k * stderr`` straddles the threshold: at this
    number of draws the data cannot say whether it is below or above; report how many there
    are and add draws rather than trust the flag. A layer without a standard error (one draw)
    or without a finite estimate (every draw non-finite) is never flagged and counts as
    undecidable. ``alpha`` defaults to 1, the fine-tuned model, because Algorithm 1 prunes
    theta_1 and the paper detects its stragglers there.

    Returns one row per layer (input order) with the group columns, ``alpha, layer, value,
    stderr, [n_nonfinite,] threshold, eps, eps_rel, k, straggler, undecidable``.
    """
    if eps < 0 or not 0 <= eps_rel <= 1:
        raise ValueError(f"need eps >= 0 and 0 <= eps_rel <= 1, got eps={eps}, eps_rel={eps_rel}")
    if not 0 < k < math.inf:
        raise ValueError(f"k (standard errors) must be a positive number, got {k}")
    required = ["alpha", "layer", "metric", "value", "stderr"]
    missing = [c for c in required if c not in layerwise.columns]
    if missing:
        raise ValueError(f"layer-wise sharpness table lacks column(s) {', '.join(missing)}; pass the table 'interpsharp sharpness --layerwise' writes")
    rows = layerwise[layerwise["metric"] == metric]
    at_alpha = rows[np.isclose(rows["alpha"].astype(float), alpha, rtol=0, atol=_ALPHA_ATOL)]
    if at_alpha.empty:
        have = sorted(rows["alpha"].astype(float).unique())
        raise ValueError(f"no {metric!r} rows at alpha={alpha}; the table has alphas {have}")
    keys = [c for c in GROUP_COLUMNS if c in at_alpha.columns]
    kept = keys + ["alpha", "layer", "value", "stderr"] + (["n_nonfinite"] if "n_nonfinite" in at_alpha.columns else [])
    out = []
    for _, group in (at_alpha.groupby(keys, sort=False, dropna=False) if keys else [(None, at_alpha)]):
        group = group[kept].copy()
        threshold = max(eps, eps_rel * float(group["value"].max()))
        size = group["value"].abs().astype(float)
        margin = k * group["stderr"].astype(float)
        known = size.notna() & margin.notna()
        group["threshold"] = threshold
        group["eps"], group["eps_rel"], group["k"] = float(eps), float(eps_rel), float(k)
        group["straggler"] = known & (size <= threshold) & (size <= margin)
        group["undecidable"] = ~known | ((size - margin < threshold) & (size + margin > threshold))
        out.append(group)
    return pd.concat(out, ignore_index=True)


def straggler_layers(table: pd.DataFrame, model: str | None = None, criterion: str | None = None) -> list[str]:
    """Straggler layer names from a straggler table, in table order.

    Accepts :func:`stragglers_by_sharpness` output (rows with ``straggler`` true) and
    :func:`interpsharp.metrics.stragglers_by_interpolation` output (every row is one). A table
    about several models needs ``model``; ``criterion`` keeps the rows whose ``criterion``
    column has that value (a table holding both criteria).
    """
    if "layer" not in table.columns:
        raise ValueError(f"straggler table has no 'layer' column (has: {', '.join(map(str, table.columns))})")
    if criterion is not None:
        if "criterion" not in table.columns:
            raise ValueError(f"straggler table has no 'criterion' column to select {criterion!r} from")
        table = table[table["criterion"].astype(str) == criterion]
    if "model" in table.columns:
        models = list(dict.fromkeys(table["model"].astype(str)))
        if model is None and len(models) > 1:
            raise ValueError(f"straggler table is about several models ({', '.join(models)}); say which one")
        if model is not None:
            if model not in models:
                raise ValueError(f"straggler table has no rows for model {model!r} (has: {', '.join(models)})")
            table = table[table["model"].astype(str) == model]
    if "straggler" in table.columns:
        flags = table["straggler"]
        if flags.dtype != bool:
            flags = flags.astype(str).str.lower().map({"true": True, "false": False, "1": True, "0": False})
            if flags.isna().any():
                raise ValueError("straggler column holds values other than true/false")
        table = table[flags.astype(bool)]
    return list(dict.fromkeys(table["layer"].astype(str)))


def _as_sets(stragglers: pd.DataFrame | Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    if isinstance(stragglers, pd.DataFrame):
        if "model" not in stragglers.columns:
            raise ValueError("straggler table needs a 'model' column to be compared per model")
        return {str(m): straggler_layers(stragglers, str(m)) for m in dict.fromkeys(stragglers["model"].astype(str))}
    return {str(m): list(dict.fromkeys(layers)) for m, layers in stragglers.items()}


def straggler_overlap(
    by_interpolation: pd.DataFrame | Mapping[str, Iterable[str]],
    by_sharpness: pd.DataFrame | Mapping[str, Iterable[str]],
) -> pd.DataFrame:
    """Per model: both straggler sets, their intersection and Jaccard index.

    Inputs are straggler tables (see :func:`straggler_layers`) or ``{model: layers}``. A model
    missing from one side has no stragglers there. Two empty sets agree perfectly (Jaccard 1).
    Sets are written as comma-separated layer names in order of first appearance.
    """
    interp, sharp = _as_sets(by_interpolation), _as_sets(by_sharpness)
    rows = []
    for model in dict.fromkeys([*interp, *sharp]):
        a, b = interp.get(model, []), sharp.get(model, [])
        both = [layer for layer in a if layer in set(b)]
        union = len(set(a) | set(b))
        rows.append({
            "model": model,
            "by_interpolation": ",".join(a),
            "by_sharpness": ",".join(b),
            "intersection": ",".join(both),
            "n_by_interpolation": len(a),
            "n_by_sharpness": len(b),
            "n_intersection": len(both),
            "jaccard": len(both) / union if union else 1.0,
        })
    return pd.DataFrame(rows)
