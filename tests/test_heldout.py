"""Held-out gains: alpha* chosen on the selection part, scored on the held-out part, with a
paired bootstrap interval. Expected values are computed here from the raw arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from interpsharp.scores import ScoredPath
from interpsharp.heldout import NOT_SIGNIFICANT, heldout_gain, heldout_gains, paired_bootstrap_difference
from interpsharp.metrics import OutcomeThresholds
from interpsharp.subsets import selection_split

THRESHOLDS = OutcomeThresholds(delta=0.1, xi=0.02, tolerance=0.001)
ALPHAS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
N = 4000
LABELS = np.arange(N) % 10


def path_from_accuracies(accuracies, seed=0, shared=None) -> ScoredPath:
    """Per-image correctness whose accuracy at alpha i is ~accuracies[i]; ``shared`` makes the
    points agree on most images (as interpolated models do), which pairing exploits."""
    rng = np.random.default_rng(seed)
    base = rng.random(N)
    correct = np.stack([base < a for a in accuracies])
    if shared is not None:
        flip = rng.random((len(accuracies), N)) < shared
        correct ^= flip
    return ScoredPath(ALPHAS, correct, np.zeros(correct.shape, dtype=np.float32))


def test_a_real_gain_is_chosen_on_selection_scored_on_heldout_and_significant():
    split = selection_split(LABELS, 0.5, seed=0)
    scored = path_from_accuracies([0.40, 0.45, 0.50, 0.44, 0.30])
    row = heldout_gain(scored, split, THRESHOLDS, n_boot=1000, seed=0)
    sel = scored.correct[:, split.selection].mean(axis=1)
    held = scored.correct[:, split.heldout].mean(axis=1)
    assert row["alpha_star_selection"] == ALPHAS[int(np.argmax(sel))] == 0.5
    assert row["heldout_gain"] == pytest.approx(held[2] - held[0])
    assert row["heldout_gain_vs_best_endpoint"] == pytest.approx(held[2] - max(held[0], held[-1]))
    assert row["interval_excludes_zero"] and row["heldout_outcome"] == "high_gain"
    assert row["ci_low"] < row["heldout_gain_vs_best_endpoint"] < row["ci_high"]
    assert row["n_selection"] + row["n_heldout"] == N


def test_interval_width_matches_the_paired_standard_error():
    # Nested correctness (alpha* correct wherever the endpoint is): the paired difference per
    # image is 0 or 1, so its standard error is sqrt(p (1 - p) / n) with p the share of images
    # only alpha* gets right; the 95 % percentile interval is about +-1.96 of it.
    rng = np.random.default_rng(1)
    u = rng.random(2000)
    correct = np.stack([u < 0.5, u < 0.45, u < 0.2])
    low, high, diffs = paired_bootstrap_difference(correct, n_boot=4000, seed=0, confidence=0.95)
    p = (correct[0] & ~correct[1]).mean()
    se = math.sqrt(p * (1 - p) / 2000)
    assert diffs.std() == pytest.approx(se, rel=0.1)
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.12)
    # Unpaired resampling would be about sqrt(2 * 0.25 / 2000 / se^2) times wider: pairing matters.
    assert (high - low) < 0.5 * 2 * 1.96 * math.sqrt(2 * 0.25 / 2000)


def test_a_flat_path_chosen_by_noise_is_not_significant():
    # Every point is the zero-shot model up to a few independent flips: the selection part
    # picks some alpha* > 0 by chance, the held-out part cannot confirm it.
    split = selection_split(LABELS, 0.5, seed=3)
    scored = path_from_accuracies([0.4] * 5, seed=2, shared=0.01)
    row = heldout_gain(scored, split, THRESHOLDS, n_boot=1000, seed=0)
    assert row["outcome_selection"] != "failure_mode"  # (with these seeds the noise does pick an alpha* > 0)
    assert row["heldout_outcome"] == NOT_SIGNIFICANT and not row["interval_excludes_zero"]
    assert row["ci_low"] <= 0 <= row["ci_high"] or row["ci_high"] < 0


def test_failure_mode_has_no_interval_and_says_why():
    split = selection_split(LABELS, 0.5, seed=0)
    scored = path_from_accuracies([0.40, 0.35, 0.30, 0.25, 0.20])
    row = heldout_gain(scored, split, THRESHOLDS, n_boot=100, seed=0)
    assert row["heldout_outcome"] == "failure_mode" and row["alpha_star_selection"] == 0.0
    assert math.isnan(row["ci_low"]) and "alpha* = 0" in row["reason"]
    assert row["heldout_gain"] == 0.0


def test_bootstrap_is_seeded_and_table_keeps_keys():
    split = selection_split(LABELS, 0.5, seed=0)
    scored = path_from_accuracies([0.40, 0.45, 0.50, 0.44, 0.30])
    a = heldout_gain(scored, split, THRESHOLDS, n_boot=300, seed=5)
    b = heldout_gain(scored, split, THRESHOLDS, n_boot=300, seed=5)
    c = heldout_gain(scored, split, THRESHOLDS, n_boot=300, seed=6)
    assert (a["ci_low"], a["ci_high"]) == (b["ci_low"], b["ci_high"]) != (c["ci_low"], c["ci_high"])
    table = heldout_gains([({"model": "m1", "mask_seed": 0}, scored), ({"model": "m2", "mask_seed": 1}, scored)],
                          split, THRESHOLDS, n_boot=50)
    assert list(table.columns[:2]) == ["model", "mask_seed"] and len(table) == 2


def test_mismatched_inputs_are_refused():
    split = selection_split(np.arange(8000) % 10, 0.5, seed=0)
    with pytest.raises(ValueError, match="another set"):
        heldout_gain(path_from_accuracies([0.4, 0.5, 0.5, 0.5, 0.3]), split, THRESHOLDS)
    bad = ScoredPath(np.array([0.0, 0.5]), np.zeros((2, N), bool), np.zeros((2, N), np.float32))
    with pytest.raises(ValueError, match="from 0 to 1"):
        heldout_gain(bad, selection_split(LABELS, 0.5, 0), THRESHOLDS)
    with pytest.raises(ValueError, match="\\(3, n_images\\)"):
        paired_bootstrap_difference(np.zeros((2, 5), bool), 10, 0, 0.95)


def test_alpha_star_comes_from_the_selection_part_even_where_the_heldout_part_disagrees():
    split = selection_split(LABELS, 0.5, seed=0)
    # Selection images peak at alpha 0.25, held-out images at alpha 0.75.
    acc_sel, acc_held = [0.40, 0.50, 0.45, 0.42, 0.30], [0.40, 0.42, 0.45, 0.50, 0.30]
    rng = np.random.default_rng(7)
    u = rng.random(N)
    correct = np.zeros((5, N), dtype=bool)
    for i in range(5):
        correct[i, split.selection] = u[split.selection] < acc_sel[i]
        correct[i, split.heldout] = u[split.heldout] < acc_held[i]
    row = heldout_gain(ScoredPath(ALPHAS, correct, np.zeros(correct.shape, np.float32)), split, THRESHOLDS, n_boot=200)
    assert row["alpha_star_selection"] == 0.25
    held = correct[:, split.heldout].mean(axis=1)
    assert row["acc_heldout_at_alpha_star"] == pytest.approx(held[1])
    assert row["heldout_gain"] == pytest.approx(held[1] - held[0])
    assert row["heldout_gain"] < held.max() - held[0]  # the held-out optimum is not what gets reported
