"""Path metrics on hand-made path tables: expected values come from the formulas applied to
the raw arrays here, or from numbers worked out by hand in comments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from interpsharp.metrics import (
    FAILURE_MODE,
    GAIN,
    HIGH_GAIN,
    OutcomeThresholds,
    PathTableError,
    accuracy_path_metrics,
    degenerate_interpolation_paths,
    layerwise_instability,
    loss_path_metrics,
    path_metrics,
    stragglers_by_interpolation,
)

ALPHAS = np.linspace(0, 1, 11)
THRESHOLDS = OutcomeThresholds(delta=0.1, xi=0.05, tolerance=0.0)


def path_rows(alphas, acc=None, loss=None, model="m", dataset="ood", n=500, **keys) -> pd.DataFrame:
    """Tidy rows of one path, in the evaluation's output format."""
    parts = []
    for metric, values in (("accuracy", acc), ("loss", loss)):
        if values is not None:
            parts.append(pd.DataFrame({"model": model, "dataset": dataset, **keys, "alpha": alphas,
                                       "metric": metric, "value": values, "n": n}))
    return pd.concat(parts, ignore_index=True)


def test_monotone_decreasing_accuracy_is_failure_mode_at_alpha_zero():
    acc = np.linspace(0.40, 0.20, len(ALPHAS))
    loss = np.linspace(2.0, 3.0, len(ALPHAS))
    row = path_metrics(path_rows(ALPHAS, acc, loss), THRESHOLDS).iloc[0]
    assert row["outcome"] == FAILURE_MODE
    assert row["alpha_star"] == 0.0
    assert row["gain"] == 0.0
    assert row["acc_best"] == row["acc_zero_shot"] == pytest.approx(0.40)
    # Loss rises monotonically: the max is the fine-tuned end.
    assert row["barrier_depth"] == pytest.approx(1.0)
    assert row["instability"] == pytest.approx(0.5)
    assert row["has_barrier"]


def test_bump_matches_formulas_on_raw_arrays():
    rng = np.random.default_rng(3)
    acc = 0.3 + 0.1 * np.sin(np.pi * ALPHAS) + 0.01 * rng.random(len(ALPHAS))
    loss = 2.0 + 0.5 * np.sin(np.pi * ALPHAS * 0.8) + 0.01 * rng.random(len(ALPHAS))
    table = path_rows(ALPHAS, acc, loss).sample(frac=1, random_state=0)  # row order must not matter
    row = path_metrics(table, THRESHOLDS).iloc[0]
    assert row["gain"] == pytest.approx(acc.max() - acc[0])
    assert row["alpha_star"] == pytest.approx(ALPHAS[np.argmax(acc)])
    assert row["acc_best"] == pytest.approx(acc.max())
    assert row["acc_fine_tuned"] == pytest.approx(acc[-1])
    assert row["barrier_depth"] == pytest.approx(loss.max() - loss[0])
    assert row["instability"] == pytest.approx(loss.max() - (loss[0] + loss[-1]) / 2)
    assert row["alpha_loss_max"] == pytest.approx(ALPHAS[np.argmax(loss)])
    assert row["outcome"] == (HIGH_GAIN if acc.max() - acc[0] >= 0.05 else GAIN)
    assert row["n_alphas"] == len(ALPHAS) and row["n"] == 500


def test_hand_worked_example():
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    acc = [0.30, 0.34, 0.38, 0.36, 0.20]
    loss = [2.0, 1.9, 2.1, 2.6, 2.4]
    # By hand: gain = 0.38 - 0.30 = 0.08 at alpha* = 0.5 (>= xi = 0.05: high gain);
    # depth = 2.6 - 2.0 = 0.6 (>= delta = 0.5: barrier); instability = 2.6 - (2.0 + 2.4) / 2 = 0.4.
    row = path_metrics(path_rows(alphas, acc, loss), OutcomeThresholds(delta=0.5, xi=0.05, tolerance=0.01)).iloc[0]
    assert row["gain"] == pytest.approx(0.08)
    assert row["alpha_star"] == 0.5
    assert row["outcome"] == HIGH_GAIN
    assert row["barrier_depth"] == pytest.approx(0.6)
    assert row["has_barrier"]
    assert row["instability"] == pytest.approx(0.4)
    assert row["alpha_loss_max"] == 0.75
    assert (row["delta"], row["xi"], row["tolerance"]) == (0.5, 0.05, 0.01)


def test_ties_pick_the_smallest_alpha():
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    acc = [0.30, 0.35, 0.32, 0.35, 0.35]
    row = accuracy_path_metrics(path_rows(alphas, acc=acc), THRESHOLDS).iloc[0]
    assert row["alpha_star"] == 0.25


@pytest.mark.parametrize("a0, best, xi", [(0.25, 0.375, 0.125), (0.30, 0.35, 0.05)])
def test_gain_exactly_xi_is_high_gain(a0, best, xi):
    # (0.30, 0.35): 0.35 - 0.30 is 0.04999999999999999 in floats and must still count as xi.
    acc = [a0, best, a0, a0 - 0.1]
    alphas = [0.0, 0.3, 0.6, 1.0]
    at_xi = accuracy_path_metrics(path_rows(alphas, acc=acc), OutcomeThresholds(delta=1, xi=xi)).iloc[0]
    assert at_xi["outcome"] == HIGH_GAIN and at_xi["alpha_star"] == 0.3
    above_xi = accuracy_path_metrics(path_rows(alphas, acc=acc), OutcomeThresholds(delta=1, xi=xi + 1e-6)).iloc[0]
    assert above_xi["outcome"] == GAIN and above_xi["alpha_star"] == 0.3


def test_tolerance_boundary_separates_failure_mode_from_gain():
    alphas = [0.0, 0.5, 1.0]
    acc = [0.5, 0.5 + 2**-6, 0.4]  # gain 1/64, exact in binary
    at_tol = accuracy_path_metrics(path_rows(alphas, acc=acc), OutcomeThresholds(delta=1, xi=0.5, tolerance=2**-6)).iloc[0]
    assert at_tol["outcome"] == FAILURE_MODE
    assert at_tol["alpha_star"] == 0.0
    assert at_tol["gain"] == 2**-6  # reported, though within tolerance
    assert at_tol["acc_at_alpha_star"] == 0.5
    below_tol = accuracy_path_metrics(path_rows(alphas, acc=acc), OutcomeThresholds(delta=1, xi=0.5, tolerance=2**-7)).iloc[0]
    assert below_tol["outcome"] == GAIN and below_tol["alpha_star"] == 0.5


def test_depth_exactly_delta_is_a_barrier():
    alphas = [0.0, 0.5, 1.0]
    loss = [1.0, 1.25, 0.5]
    assert loss_path_metrics(path_rows(alphas, loss=loss), delta=0.25).iloc[0]["has_barrier"]
    assert not loss_path_metrics(path_rows(alphas, loss=loss), delta=0.25 + 1e-6).iloc[0]["has_barrier"]


def test_paths_are_grouped_by_every_key_present():
    table = pd.concat([
        path_rows(ALPHAS, ALPHAS * 0 + 0.3, 2 - ALPHAS, model="a", dataset="x", mask_seed=0),
        path_rows(ALPHAS, 0.3 + 0.1 * ALPHAS, 2 + ALPHAS, model="a", dataset="x", mask_seed=1),
        path_rows(ALPHAS, 0.3 - 0.1 * ALPHAS, 2 - ALPHAS, model="b", dataset="x", mask_seed=0),
    ], ignore_index=True)
    out = path_metrics(table, THRESHOLDS).set_index(["model", "dataset", "mask_seed"])
    assert len(out) == 3
    assert out.loc[("a", "x", 1), "gain"] == pytest.approx(0.1)
    assert out.loc[("a", "x", 1), "outcome"] == HIGH_GAIN
    assert out.loc[("a", "x", 1), "alpha_star"] == 1.0
    assert out.loc[("a", "x", 0), "outcome"] == FAILURE_MODE
    assert out.loc[("b", "x", 0), "barrier_depth"] == 0.0


def layerwise_table() -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Three layers that share the theta_0 endpoint, as a layer-wise sweep would."""
    loss = {
        "visual.conv1": 2.0 + 0.05 * ALPHAS,  # monotone: instability is half the rise, 0.025
        "visual.transformer.resblocks.0.attn": 2.0 + np.sin(np.pi * ALPHAS),  # bump: 1.0 above the chord
        "classification_head": 2.0 + 0.4 * ALPHAS * (1 - ALPHAS) + 0.2 * ALPHAS,  # max 2.225 at 0.75: 0.125
    }
    acc = {layer: 0.3 - 0.01 * ALPHAS for layer in loss}
    table = pd.concat([path_rows(ALPHAS, acc[layer], values, layer=layer) for layer, values in loss.items()], ignore_index=True)
    return table, loss


def test_layerwise_instability_path_endpoints_reading():
    table, loss = layerwise_table()
    out = layerwise_instability(table, reference="path_endpoints")
    assert list(out["layer"]) == list(loss)  # table order kept (forward order)
    for layer, values in loss.items():
        row = out[out["layer"] == layer].iloc[0]
        assert row["instability"] == pytest.approx(values.max() - (values[0] + values[-1]) / 2)
        assert row["loss_alpha1"] == pytest.approx(values[-1])
        assert row["reference"] == "path_endpoints"


def whole_path_losses(l0: float, l1: float, **keys) -> pd.DataFrame:
    """loss_path_metrics of a whole path from theta_0 (loss l0) to theta_1 (loss l1)."""
    return loss_path_metrics(path_rows(ALPHAS, loss=l0 + (l1 - l0) * ALPHAS, **keys), delta=0.1)


def test_layerwise_instability_original_models_reading_is_the_papers_def_1_1():
    table, loss = layerwise_table()
    # The fine-tuned model is much worse on this set (3.0 vs 2.0): the paper's reference is the
    # mean of the two original models, 2.5, not the layer-wise path's own endpoints.
    out = layerwise_instability(table, reference="original_models", endpoints=whole_path_losses(2.0, 3.0))
    for layer, values in loss.items():
        row = out[out["layer"] == layer].iloc[0]
        assert row["instability"] == pytest.approx(values.max() - 2.5)
        assert row["reference_loss"] == pytest.approx(2.5) and row["reference"] == "original_models"
    # The two readings disagree exactly by the difference of their references.
    other = layerwise_instability(table, reference="path_endpoints")
    np.testing.assert_allclose(out["instability"] - other["instability"],
                               [(v[0] + v[-1]) / 2 - 2.5 for v in loss.values()])
    with pytest.raises(PathTableError, match="needs the whole paths' losses"):
        layerwise_instability(table, reference="original_models")
    with pytest.raises(PathTableError, match="no whole-path losses for model=m, dataset=ood"):
        layerwise_instability(table, reference="original_models", endpoints=whole_path_losses(2.0, 3.0, model="x"))
    with pytest.raises(ValueError, match="unknown Def. 1.1 reference"):
        layerwise_instability(table, reference="endpoints")


def test_a_fine_tune_better_than_zero_shot_makes_every_layer_exceed_delta_by_construction():
    # L(theta_0) = 2.0, L(theta_1) = 1.6: the original models' mean 1.8 lies 0.2 below theta_0,
    # where every layer-wise path starts, so with delta 0.1 Def. 1.2 would flag every layer.
    table, loss = layerwise_table()
    instability = layerwise_instability(table, reference="original_models", endpoints=whole_path_losses(2.0, 1.6))
    assert (instability["instability"] > 0.1).all()
    np.testing.assert_allclose(instability["instability_at_alpha0"], 0.2)
    assert degenerate_interpolation_paths(instability, 0.1).all()
    assert stragglers_by_interpolation(table, 0.1, endpoints=whole_path_losses(2.0, 1.6)).empty
    # With delta above that floor the criterion is informative again: only the bump exceeds 0.5.
    assert list(stragglers_by_interpolation(table, 0.5, endpoints=whole_path_losses(2.0, 1.6))["layer"]) == [
        "visual.transformer.resblocks.0.attn"]


def test_original_models_reference_is_matched_per_split():
    table, _ = layerwise_table()
    both = pd.concat([table.assign(split="selection"), table.assign(split="heldout", value=table["value"] + 1)])
    endpoints = pd.concat([whole_path_losses(2.0, 3.0, split="selection"), whole_path_losses(5.0, 5.0, split="heldout")])
    out = layerwise_instability(both, reference="original_models", endpoints=endpoints).set_index(["split", "layer"])
    assert out.loc[("selection", "visual.conv1"), "instability"] == pytest.approx(2.05 - 2.5)
    assert out.loc[("heldout", "visual.conv1"), "instability"] == pytest.approx(3.05 - 5.0)


def test_stragglers_exceed_delta():
    table, loss = layerwise_table()
    expected = [layer for layer, v in loss.items() if v.max() - (v[0] + v[-1]) / 2 > 0.05]
    out = stragglers_by_interpolation(table, delta=0.05, reference="path_endpoints")
    assert list(out["layer"]) == expected == ["visual.transformer.resblocks.0.attn", "classification_head"]
    assert (out["delta"] == 0.05).all()
    # The bump's instability is exactly 1.0; "exceeds" is strict.
    flagged = stragglers_by_interpolation(table, delta=1.0, reference="path_endpoints")
    assert "visual.transformer.resblocks.0.attn" not in set(flagged["layer"])
    # Against the original models (mean 2.5), only the bump (max 3.0) exceeds 0.05.
    paper = stragglers_by_interpolation(table, delta=0.05, endpoints=whole_path_losses(2.0, 3.0))
    assert list(paper["layer"]) == ["visual.transformer.resblocks.0.attn"]


def test_missing_columns_are_named():
    table = path_rows(ALPHAS, ALPHAS, ALPHAS).drop(columns=["dataset", "alpha"])
    with pytest.raises(PathTableError, match="dataset, alpha"):
        path_metrics(table, THRESHOLDS)


@pytest.mark.parametrize("endpoint", [0.0, 1.0])
def test_missing_endpoint_is_an_error(endpoint):
    table = path_rows(ALPHAS, ALPHAS, ALPHAS, model="ft7")
    table = table[table["alpha"] != endpoint]
    with pytest.raises(PathTableError, match=rf"model=ft7.*lacks alpha {int(endpoint)}"):
        path_metrics(table, THRESHOLDS)


def test_other_table_errors():
    with pytest.raises(PathTableError, match="no 'loss' rows"):
        path_metrics(pd.concat([path_rows(ALPHAS, ALPHAS, ALPHAS, model="a"), path_rows(ALPHAS, acc=ALPHAS, model="b")]), THRESHOLDS)
    with pytest.raises(PathTableError, match="several rows at alpha"):
        loss_path_metrics(pd.concat([path_rows(ALPHAS, loss=ALPHAS)] * 2), delta=0.1)
    with pytest.raises(PathTableError, match="no 'layer' column"):
        layerwise_instability(path_rows(ALPHAS, ALPHAS, ALPHAS))
    with pytest.raises(ValueError, match="xi"):
        OutcomeThresholds(delta=0.1, xi=0.01, tolerance=0.01)
