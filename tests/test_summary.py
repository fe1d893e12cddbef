"""The per-model summary: measures taken at alpha* are left out for failure modes (they would
come out of the definition, not the data), and every column is computed from its source table.
Expected values are computed here from the hand-built tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from interpsharp.metrics import OutcomeThresholds, loss_path_metrics, path_metrics
from interpsharp.summary import NOTHING_PRUNED, SummarySettings, model_summary, straggler_sets

ALPHAS = [0.0, 0.5, 1.0]
LAYERS = ["visual.conv1", "visual.ln_pre", "classification_head"]
SETTINGS = SummarySettings(main_ood="ood", rho=1.0, mode="perturb_finetuned", eps=0.01, eps_rel=0.0, k=2.0,
                           delta=0.1, reference="original_models")
THRESHOLDS = OutcomeThresholds(delta=0.1, xi=0.02, tolerance=0.001)


def evaluation() -> pd.DataFrame:
    """model_f falls from alpha 0 (failure mode); model_g peaks at alpha 0.5 (high gain)."""
    curves = {"model_f": ([0.40, 0.35, 0.30], [2.0, 2.3, 2.6]), "model_g": ([0.40, 0.46, 0.38], [2.0, 1.9, 2.2])}
    rows = []
    for model, (acc, loss) in curves.items():
        for alpha, a, l in zip(ALPHAS, acc, loss):
            for split in ("all", "selection"):
                rows += [(model, "ood", split, alpha, "accuracy", a, 100), (model, "ood", split, alpha, "loss", l, 100)]
    return pd.DataFrame(rows, columns=["model", "dataset", "split", "alpha", "metric", "value", "n"])


def heldout() -> pd.DataFrame:
    rows = [
        dict(model="model_f", dataset="ood", path="original", mask_seed=math.nan, alpha_star_selection=0.0,
             outcome_selection="failure_mode", heldout_gain=0.0, heldout_gain_vs_best_endpoint=0.0,
             ci_low=math.nan, ci_high=math.nan, heldout_outcome="failure_mode"),
        dict(model="model_g", dataset="ood", path="original", mask_seed=math.nan, alpha_star_selection=0.5,
             outcome_selection="high_gain", heldout_gain=0.05, heldout_gain_vs_best_endpoint=0.05,
             ci_low=0.01, ci_high=0.09, heldout_outcome="high_gain"),
        dict(model="model_f", dataset="ood", path="pruned", mask_seed=0, alpha_star_selection=0.5,
             outcome_selection="gain", heldout_gain=0.02, heldout_gain_vs_best_endpoint=0.02,
             ci_low=0.001, ci_high=0.04, heldout_outcome="gain"),
        dict(model="model_g", dataset="ood", path="pruned", mask_seed=0, alpha_star_selection=0.5,
             outcome_selection="high_gain", heldout_gain=0.05, heldout_gain_vs_best_endpoint=0.05,
             ci_low=0.01, ci_high=0.09, heldout_outcome="high_gain"),
    ]
    return pd.DataFrame(rows)


def sharpness_tables(layerwise_at_zero: float = 0.0, general_at_zero: float = 0.7):
    """Layer-wise sharpness is exactly 0 at alpha 0 in perturb_finetuned mode (the noise
    alpha rho |W1| vanishes); general sharpness at alpha 0 is theta_0's, the same for both."""
    general, layerwise = [], []
    for m_i, model in enumerate(["model_f", "model_g"]):
        for alpha in ALPHAS:
            value = general_at_zero if alpha == 0 else 1.0 + m_i + alpha
            general.append(dict(model=model, dataset="ood", alpha=alpha, layer="all", metric="general_sharpness",
                                value=value, stderr=0.01, n_nonfinite=0, rho=1.0))
            general.append(dict(model=model, dataset="ood", alpha=alpha, layer="all", metric="general_sharpness",
                                value=value * 0.1, stderr=0.01, n_nonfinite=0, rho=0.1))
            for l_i, layer in enumerate(LAYERS):
                value = layerwise_at_zero if alpha == 0 else (0.5 + l_i) * alpha * (1 + m_i)
                if model == "model_g" and layer == "visual.ln_pre":
                    value = 0.001 * alpha  # a flat layer of the gaining model
                layerwise.append(dict(model=model, dataset="ood", alpha=alpha, layer=layer, metric="layerwise_sharpness",
                                      value=value, stderr=0.002, n_nonfinite=1 if (model, layer, alpha) == ("model_f", "visual.conv1", 1.0) else 0,
                                      rho=1.0, mode="perturb_finetuned"))
    return pd.DataFrame(general), pd.DataFrame(layerwise)


def build(layerwise_at_zero: float = 0.0, general_at_zero: float = 0.7, n_pruned: dict | None = None):
    evaluation_table = evaluation()
    metrics = path_metrics(evaluation_table, THRESHOLDS)
    general, layerwise = sharpness_tables(layerwise_at_zero, general_at_zero)
    instability = pd.DataFrame([
        dict(model=m, dataset="ood", split="selection", layer=layer, instability=v, instability_at_alpha0=-0.2, reference=ref)
        for m, values in (("model_f", [0.3, 0.0, -0.1]), ("model_g", [0.05, 0.0, -0.1]))
        for layer, v in zip(LAYERS, values) for ref in ("original_models", "path_endpoints")
    ])
    stragglers = pd.DataFrame([
        dict(model="model_f", criterion="interpolation", layer="visual.conv1", straggler=True, undecidable=math.nan),
        dict(model="model_g", criterion="sharpness", layer="visual.ln_pre", straggler=True, undecidable=False),
        dict(model="model_g", criterion="sharpness", layer="visual.conv1", straggler=False, undecidable=True),
    ])
    n_pruned = n_pruned or {"model_f": 1, "model_g": 0}
    pruning = pd.DataFrame([dict(model=m, dataset="ood", split="all", alpha=0.0, metric="accuracy", value=0.4,
                                 mask_seed=0, n_pruned_layers=n, n_pruned_parameters=100 * n) for m, n in n_pruned.items()])
    pruning_metrics = metrics.assign(mask_seed=0)
    summary = model_summary(metrics, heldout(), general, layerwise, instability, stragglers, pruning, pruning_metrics, SETTINGS)
    return summary.set_index("model"), (metrics, general, layerwise, instability, stragglers)


def test_no_alpha_star_measure_takes_its_value_from_the_outcome_alone():
    summary, _ = build()
    f, g = summary.loc["model_f"], summary.loc["model_g"]
    for column in ("min_abs_layerwise_sharpness_alpha_star", "general_sharpness_alpha_star",
                   "general_sharpness_rho0.1_alpha_star"):
        assert math.isnan(f[column]), column
        assert "alpha* = 0" in f[f"{column}_reason"]
        assert np.isfinite(g[column]) and g[f"{column}_reason"] == ""
    assert "by construction" in f["min_abs_layerwise_sharpness_alpha_star_reason"]
    assert "zero-shot model's" in f["general_sharpness_alpha_star_reason"]
    # What the failure mode's cells would have held: the alpha = 0 column, which is 0 for every
    # layer-wise value and theta_0's general sharpness, i.e. a function of the outcome. Change it
    # arbitrarily: nothing in the summary may move.
    other, _ = build(layerwise_at_zero=123.0, general_at_zero=-5.0)
    pd.testing.assert_frame_equal(summary, other)


def test_alpha_star_measures_use_the_selection_alpha_star_and_fixed_alpha_measures_every_model():
    summary, (_, general, layerwise, _, _) = build()
    g = summary.loc["model_g"]
    at_half = layerwise[(layerwise["model"] == "model_g") & (layerwise["alpha"] == 0.5)]["value"].abs().min()
    assert g["min_abs_layerwise_sharpness_alpha_star"] == pytest.approx(at_half) == pytest.approx(0.0005)
    for model in ("model_f", "model_g"):
        at_one = layerwise[(layerwise["model"] == model) & (layerwise["alpha"] == 1.0)]["value"].abs().min()
        assert summary.loc[model, "min_abs_layerwise_sharpness_alpha1"] == pytest.approx(at_one)
        expected = general[(general["model"] == model) & (general["alpha"] == 1.0) & (general["rho"] == 1.0)]["value"].item()
        assert summary.loc[model, "general_sharpness_alpha1"] == pytest.approx(expected)
    assert g["general_sharpness_alpha_star"] == pytest.approx(1.0 + 1 + 0.5)
    assert summary.loc["model_f", "n_nonfinite_layerwise"] == 1 and g["n_nonfinite_layerwise"] == 0


def test_flat_layers_at_alpha_star_and_their_base_rate():
    summary, _ = build()
    g = summary.loc["model_g"]
    # ln_pre: |S| 0.0005 <= eps 0.01 and <= 2 SE (0.004) at alpha 0.5: one flat layer at alpha*.
    assert g["n_flat_layers_alpha_star"] == 1
    # The only other point with alpha > 0 is alpha 1, where ln_pre's 0.001 is flat too.
    assert g["share_other_points_with_flat_layer"] == 1.0
    assert math.isnan(summary.loc["model_f", "n_flat_layers_alpha_star"])


def test_heldout_stragglers_and_pruning_columns():
    summary, _ = build()
    f, g = summary.loc["model_f"], summary.loc["model_g"]
    assert f["heldout_outcome"] == "failure_mode" and g["heldout_outcome"] == "high_gain"
    assert (g["heldout_ci_low"], g["heldout_ci_high"]) == (0.01, 0.09)
    assert f["stragglers_n_by_interpolation"] == 1 and f["stragglers_n_by_sharpness"] == 0
    assert g["stragglers_n_by_sharpness"] == 1 and g["n_undecidable_by_sharpness"] == 1
    assert f["max_layerwise_instability"] == pytest.approx(0.3)
    assert f["pruning_note"] == "" and g["pruning_note"] == NOTHING_PRUNED
    assert f["n_pruned_parameters"] == 100 and g["n_pruned_layers"] == 0
    assert f["pruned_heldout_outcomes"] == "gain" and f["pruned_heldout_gain_mean"] == pytest.approx(0.02)


def test_straggler_overlap_reports_both_readings():
    _, (metrics, _, _, instability, stragglers) = build()
    instability = instability.copy()
    # Under the path-endpoints reading model_g's conv1 would be a straggler too.
    instability.loc[(instability["reference"] == "path_endpoints") & (instability["model"] == "model_g")
                    & (instability["layer"] == "visual.conv1"), "instability"] = 0.5
    out = straggler_sets(instability, stragglers, SETTINGS, metrics)
    assert set(out["reference"]) == {"original_models", "path_endpoints"}
    table = out.set_index(["model", "reference"])
    assert table.loc[("model_g", "original_models"), "by_interpolation"] == ""
    assert table.loc[("model_g", "path_endpoints"), "by_interpolation"] == "visual.conv1"
    assert table.loc[("model_f", "original_models"), "configured"]
    assert not table.loc[("model_f", "path_endpoints"), "configured"]
    assert not out["degenerate"].any()


def test_a_degenerate_interpolation_criterion_is_left_out_with_its_reason():
    _, (metrics, general, layerwise, instability, stragglers) = build()
    stragglers = pd.concat([stragglers.assign(degenerate=False),
                            pd.DataFrame([dict(model="model_g", criterion="interpolation", layer=l, straggler=False,
                                               degenerate=True) for l in LAYERS])], ignore_index=True)
    pruning = pd.DataFrame([dict(model=m, dataset="ood", split="all", alpha=0.0, metric="accuracy", value=0.4,
                                 mask_seed=0, n_pruned_layers=0, n_pruned_parameters=0) for m in ("model_f", "model_g")])
    summary = model_summary(metrics, heldout(), general, layerwise, instability, stragglers, pruning,
                            metrics.assign(mask_seed=0), SETTINGS).set_index("model")
    assert math.isnan(summary.loc["model_g", "stragglers_n_by_interpolation"])
    assert "by construction" in summary.loc["model_g", "stragglers_n_by_interpolation_reason"]
    assert summary.loc["model_f", "stragglers_n_by_interpolation"] == 1
