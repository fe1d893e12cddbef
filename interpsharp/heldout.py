"""Gains chosen on one part of the main OOD set and scored on the other, with paired bootstrap
intervals.

The in-sample gain ``max_alpha A(alpha) - A(0)`` is the maximum of noisy accuracies over the
alpha grid, measured on the images it was chosen on, so it is biased upwards: a path whose
true accuracy is flat shows a "gain" of a few images. Here alpha* and the outcome label are
chosen on the *selection* part (:func:`interpsharp.subsets.selection_split`) with the same
rule as everywhere (:func:`interpsharp.metrics.choose_alpha_star`), and the gain is scored on
the *held-out* part, which played no role in choosing.

Whether the held-out gain is more than noise is judged by a paired bootstrap over held-out
images of ``A(alpha*) - max(A(0), A(1))``: interpolation must beat both endpoints, the
zero-shot model and the fine-tuned one, evaluated on the same resampled images (pairing
removes the variance the three models share). The label says whether the interval excludes 0.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from interpsharp.metrics import FAILURE_MODE, GAIN, HIGH_GAIN, OutcomeThresholds, choose_alpha_star
from interpsharp.scores import ScoredPath
from interpsharp.subsets import SelectionSplit

#: Held-out outcome of a path whose selection-part alpha* > 0 but whose held-out interval
#: includes 0: the chosen point does not beat the endpoints by more than noise.
NOT_SIGNIFICANT = "not_significant"
HELDOUT_OUTCOMES = (FAILURE_MODE, NOT_SIGNIFICANT, GAIN, HIGH_GAIN)

#: Bounds (resamples x held-out images) per bootstrap chunk, ~15 MB of booleans for 3 paths.
_CHUNK_ELEMENTS = 5_000_000


def paired_bootstrap_difference(
    correct: np.ndarray, n_boot: int, seed: int, confidence: float
) -> tuple[float, float, np.ndarray]:
    """Percentile interval of ``mean(correct[0]) - max(mean(correct[1]), mean(correct[2]))``
    over ``n_boot`` resamples of the images (columns), the same resample for all three rows.

    ``correct``: ``(3, n)`` booleans of one image set: the chosen point, then the two
    endpoints. Returns ``(low, high, differences)``.
    """
    correct = np.asarray(correct, dtype=bool)
    if correct.ndim != 2 or correct.shape[0] != 3 or correct.shape[1] < 1:
        raise ValueError(f"need (3, n_images) correctness of the chosen point and both endpoints, got {correct.shape}")
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 1):
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = correct.shape[1]
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    differences = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(size, n))
        acc = correct[:, idx].mean(axis=-1)  # (3, size)
        differences[start:start + size] = acc[0] - np.maximum(acc[1], acc[2])
    tail = (1 - confidence) / 2
    low, high = np.quantile(differences, [tail, 1 - tail])
    return float(low), float(high), differences


def heldout_gain(
    scored: ScoredPath,
    split: SelectionSplit,
    thresholds: OutcomeThresholds,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, object]:
    """alpha* and outcome on the selection part, gain and its interval on the held-out part.

    ``scored`` holds every image of the set (columns in the set's order) at every alpha of the
    path (ascending, both endpoints included). Returns one row (a dict): ``alpha_star_selection,
    outcome_selection, gain_selection, acc_heldout_zero_shot, acc_heldout_fine_tuned,
    acc_heldout_at_alpha_star, heldout_gain`` (``A(alpha*) - A(0)``, Eq. 2's gain),
    ``heldout_gain_vs_best_endpoint`` (``A(alpha*) - max(A(0), A(1))``) and its interval
    ``ci_low, ci_high``, ``interval_excludes_zero``, ``heldout_outcome`` (see below), ``reason``,
    the sizes of both parts, and every setting that made the numbers.

    ``heldout_outcome``: ``failure_mode`` when the selection part chooses alpha* = 0 (there is
    then nothing to score and the interval is NaN); ``high_gain`` / ``gain`` when the interval
    excludes 0 (high gain when the held-out gain reaches xi); ``not_significant`` otherwise.
    """
    alphas = np.asarray(scored.alphas, dtype=float)
    if len(alphas) < 2 or abs(alphas[0]) > 1e-9 or abs(alphas[-1] - 1) > 1e-9 or (np.diff(alphas) <= 0).any():
        raise ValueError(f"a held-out gain needs a path over ascending alphas from 0 to 1, got {alphas.tolist()}")
    n_images = scored.correct.shape[1]
    if max(split.selection.max(), split.heldout.max()) >= n_images:
        raise ValueError(f"the split indexes {max(split.selection.max(), split.heldout.max()) + 1}+ images "
                         f"but the path was scored on {n_images}: was it made for another set?")
    acc_selection = scored.correct[:, split.selection].mean(axis=1)
    outcome, i_star = choose_alpha_star(acc_selection, thresholds)
    heldout = scored.correct[:, split.heldout]
    acc_heldout = heldout.mean(axis=1)
    row: dict[str, object] = {
        "alpha_star_selection": alphas[i_star],
        "outcome_selection": outcome,
        "gain_selection": float(acc_selection.max() - acc_selection[0]),
        "acc_heldout_zero_shot": float(acc_heldout[0]),
        "acc_heldout_fine_tuned": float(acc_heldout[-1]),
        "acc_heldout_at_alpha_star": float(acc_heldout[i_star]),
        "heldout_gain": float(acc_heldout[i_star] - acc_heldout[0]),
        "heldout_gain_vs_best_endpoint": float(acc_heldout[i_star] - max(acc_heldout[0], acc_heldout[-1])),
    }
    if outcome == FAILURE_MODE:
        row.update(ci_low=math.nan, ci_high=math.nan, interval_excludes_zero=False, heldout_outcome=FAILURE_MODE,
                   reason="alpha* = 0 on the selection part: no interpolated point was chosen, nothing to score")
    else:
        low, high, _ = paired_bootstrap_difference(heldout[[i_star, 0, -1]], n_boot, seed, confidence)
        excludes = bool(low > 0)
        if not excludes:
            label = NOT_SIGNIFICANT
        else:
            label = HIGH_GAIN if row["heldout_gain"] >= thresholds.xi - 1e-12 else GAIN
        row.update(ci_low=low, ci_high=high, interval_excludes_zero=excludes, heldout_outcome=label, reason="")
    row.update(
        n_selection=len(split.selection), n_heldout=len(split.heldout), split_fraction=split.fraction,
        split_seed=split.seed, n_boot=n_boot, boot_seed=seed, confidence=confidence,
        xi=thresholds.xi, tolerance=thresholds.tolerance,
    )
    return row


def heldout_gains(
    paths: Iterable[tuple[Mapping[str, object], ScoredPath]],
    split: SelectionSplit,
    thresholds: OutcomeThresholds,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """One :func:`heldout_gain` row per ``(keys, scored path)``, keys first (e.g. model,
    dataset, path, mask_seed)."""
    rows = [{**keys, **heldout_gain(scored, split, thresholds, n_boot, seed, confidence)} for keys, scored in paths]
    if not rows:
        raise ValueError("no paths to score")
    return pd.DataFrame(rows)
