"""The claims table: an explicit list of measures with their n and reasons for leaving models
out, and verdicts decided by fixed rules on hand-built summaries."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from interpsharp.claims import (
    CANNOT_DECIDE,
    DOES_NOT_SUPPORT,
    MEASURES,
    SUPPORTS,
    assess_claims,
    correlation_measures,
    correlations,
)


def summary(outcomes, n_sharp, n_interp, **columns) -> pd.DataFrame:
    n = len(outcomes)
    rng = np.random.default_rng(0)
    gain = np.array([0.0 if o == "failure_mode" else 0.03 for o in outcomes])
    table = pd.DataFrame({
        "model": [f"model_{i}" for i in range(n)], "dataset": "ood", "gain": gain + 0.001, "heldout_gain": gain,
        "heldout_outcome": outcomes, "stragglers_n_by_sharpness": n_sharp, "stragglers_n_by_interpolation": n_interp,
        "general_sharpness_alpha1": rng.random(n), "general_sharpness_rho0.5_alpha1": rng.random(n),
        "min_abs_layerwise_sharpness_alpha1": rng.random(n),
        "general_sharpness_alpha_star": [math.nan if o == "failure_mode" else v for o, v in zip(outcomes, rng.random(n))],
        "general_sharpness_alpha_star_reason": ["alpha* = 0: why" if o == "failure_mode" else "" for o in outcomes],
        "n_flat_layers_alpha_star": [math.nan if o == "failure_mode" else 1 for o in outcomes],
        "share_other_points_with_flat_layer": [math.nan if o == "failure_mode" else 0.2 for o in outcomes],
        "n_pruned_layers": n_sharp, "pruned_heldout_outcomes": ["gain,gain,failure_mode"] * n,
        "n_undecidable_by_sharpness": 3,
    })
    return table.assign(**columns)


SEPARATED = ["failure_mode"] * 5 + ["gain"] * 5


def test_measures_come_from_the_explicit_list_only():
    table = summary(SEPARATED, [1] * 5 + [0] * 5, [0] * 10).assign(sneaky_sharpness_count=np.arange(10))
    measures = correlation_measures(table, rho_sweep=[0.5])
    columns = [m.column for m in measures]
    assert "sneaky_sharpness_count" not in columns and "stragglers_n_by_sharpness" not in columns
    assert "general_sharpness_rho0.5_alpha1" in columns
    assert all(m.column in table.columns for m in measures)
    assert {m.claim for m in MEASURES} <= {"C0", "C1", "C2", "C3", "C4"}


def test_correlations_report_who_entered_and_why_the_rest_were_left_out():
    table = summary(SEPARATED, [1] * 5 + [0] * 5, [0] * 10)
    out = correlations(table, correlation_measures(table), n_boot=200, seed=0, confidence=0.95)
    star = out[(out["x"] == "general_sharpness_alpha_star") & (out["y"] == "heldout_gain")]
    assert set(star["n"]) == {5} and set(star["n_left_out"]) == {5}
    assert set(star["left_out"]) == {"5: alpha* = 0: why"}
    one = out[(out["x"] == "general_sharpness_alpha1") & (out["y"] == "heldout_gain") & (out["method"] == "kendall_tau")]
    assert one["n"].item() == 10 and one["left_out"].item() == ""
    expected = stats.kendalltau(table["general_sharpness_alpha1"], table["heldout_gain"]).statistic
    assert one["statistic"].item() == pytest.approx(expected)
    assert set(out["y"]) == {"heldout_gain", "gain"} and {"claim", "expected_sign"} <= set(out.columns)


def verdicts(table, corr=None):
    corr = correlations(table, correlation_measures(table), 200, 0, 0.95) if corr is None else corr
    return assess_claims(table, corr, 0.95).set_index("claim")["verdict"].to_dict()


def test_perfect_separation_supports_and_a_counterexample_does_not():
    # Every failure mode has a straggler by sharpness, no gaining model has one: Fisher's exact
    # one-sided p = 1 / C(10, 5) = 0.004.
    v = verdicts(summary(SEPARATED, [1] * 5 + [0] * 5, [1] * 5 + [0] * 5))
    assert v["C0"] == SUPPORTS and v["C2"] == SUPPORTS and v["C4"] == SUPPORTS
    # One gaining model (beyond noise) with a straggler by sharpness contradicts "a flat layer
    # means failure"; the interpolation criterion is an association, so it only weakens.
    v = verdicts(summary(SEPARATED, [1] * 6 + [0] * 4, [1] * 6 + [0] * 4))
    assert v["C2"] == DOES_NOT_SUPPORT and v["C4"] == SUPPORTS
    # Reversed association: only the gaining models have interpolation stragglers.
    v = verdicts(summary(SEPARATED, [0] * 10, [0] * 5 + [1] * 5))
    assert v["C4"] == DOES_NOT_SUPPORT and v["C2"] == CANNOT_DECIDE


def test_small_or_absent_evidence_cannot_decide():
    three = ["failure_mode", "gain", "not_significant"]
    v = verdicts(summary(three, [1, 0, 0], [1, 0, 0]))
    assert v["C2"] == CANNOT_DECIDE and v["C4"] == CANNOT_DECIDE  # Fisher p = 1/3 with 3 models
    v = verdicts(summary(["failure_mode"] * 4, [0] * 4, [0] * 4))
    assert v["C0"] == CANNOT_DECIDE and v["C3"] == CANNOT_DECIDE and v["C5"] == CANNOT_DECIDE


def test_flat_layer_at_alpha_star_needs_every_gaining_model_and_a_low_base_rate():
    base = summary(SEPARATED, [0] * 10, [0] * 10)
    assert verdicts(base)["C3"] == SUPPORTS
    assert verdicts(base.assign(share_other_points_with_flat_layer=0.9))["C3"] == CANNOT_DECIDE
    lacking = base.copy()
    lacking.loc[7, "n_flat_layers_alpha_star"] = 0
    assert verdicts(lacking)["C3"] == DOES_NOT_SUPPORT


def test_pruning_rescue_counts_failure_modes_with_pruned_layers():
    table = summary(SEPARATED, [1] * 5 + [0] * 5, [0] * 10)  # 2 of 3 masks gain: rescued
    assert verdicts(table)["C5"] == SUPPORTS
    assert verdicts(table.assign(pruned_heldout_outcomes="failure_mode,gain,failure_mode"))["C5"] == DOES_NOT_SUPPORT


def test_general_sharpness_tracking_the_gain_does_not_support_claim_1():
    table = summary(SEPARATED, [0] * 10, [0] * 10)
    table["general_sharpness_alpha1"] = np.arange(10.0)  # perfectly ordered with the gain groups
    assert verdicts(table)["C1"] == DOES_NOT_SUPPORT
    table["general_sharpness_alpha1"] = [0, 9, 1, 8, 2, 7, 3, 6, 4, 5]
    assert verdicts(table)["C1"] == CANNOT_DECIDE
