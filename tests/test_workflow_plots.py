"""interpsharp.plots: model selection, labels, atomic saving, and figures that show the table's
numbers (the marks of Figure 1 sit where the path-metrics table says)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from interpsharp import plots
from interpsharp.metrics import OutcomeThresholds, path_metrics


def paths_table() -> pd.DataFrame:
    """Three models on one OOD set: a failure mode, a small gain and a high gain."""
    alphas = np.linspace(0, 1, 5)
    curves = {
        "model_a": (0.50 - 0.2 * alphas, 1.0 + np.sin(np.pi * alphas)),  # falls; deep barrier
        "model_b": (0.50 + 0.01 * np.sin(np.pi * alphas), 1.0 + 0.1 * alphas),  # +1 point at alpha 0.5
        "model_c": (0.50 + 0.10 * np.sin(np.pi * alphas), 1.0 - 0.1 * alphas),  # +10 points
    }
    rows = []
    for model, (acc, loss) in curves.items():
        for alpha, a, l in zip(alphas, acc, loss):
            rows += [(model, "ood", alpha, "accuracy", a, 100), (model, "ood", alpha, "loss", l, 100)]
    return pd.DataFrame(rows, columns=["model", "dataset", "alpha", "metric", "value", "n"])


@pytest.fixture
def tables():
    paths = paths_table()
    return paths, path_metrics(paths, OutcomeThresholds(delta=0.1, xi=0.05, tolerance=0.001))


def test_short_layer_names():
    assert plots.short_layer_name("visual.transformer.resblocks.11.mlp.c_fc") == "b11.mlp.c_fc"
    assert plots.short_layer_name("visual.conv1") == "conv1"
    assert plots.short_layer_name("classification_head") == "classification_head"


def test_representative_models_contrast_failure_and_high_gain(tables):
    _, metrics = tables
    assert set(metrics["outcome"]) == {"failure_mode", "gain", "high_gain"}
    assert plots.representative_models(metrics, "ood", per_outcome=1) == [("model_a", "failure_mode"), ("model_c", "high_gain")]
    # Only one model per outcome exists; asking for two never repeats a model.
    picked = plots.representative_models(metrics, "ood", per_outcome=2)
    assert len({m for m, _ in picked}) == len(picked)


def test_representative_models_fall_back_to_extreme_gains(tables):
    _, metrics = tables
    no_failure = metrics[metrics["outcome"] != "failure_mode"]
    assert plots.representative_models(no_failure, "ood") == [("model_b", "gain"), ("model_c", "high_gain")]


def test_figure1_marks_sit_at_the_tables_alpha_star_and_loss_maximum(tables):
    paths, metrics = tables
    fig = plots.plot_interpolation_paths(paths, metrics, "ood")
    ax_acc, ax_loss = fig.axes
    stars = {tuple(np.round(line.get_xydata()[0], 9)) for line in ax_acc.lines if line.get_marker() == "*"}
    expected = {(round(a, 9), round(100 * b, 9)) for a, b in zip(metrics["alpha_star"], metrics["acc_best"])}
    assert stars == expected
    peaks = {tuple(np.round(line.get_xydata()[0], 9)) for line in ax_loss.lines if line.get_marker() == "v"}
    assert peaks == {(round(a, 9), round(l, 9)) for a, l in zip(metrics["alpha_loss_max"], metrics["loss_max"])}
    assert any("failure mode" in t.get_text() for t in ax_acc.get_legend().get_texts())


def test_missing_rows_or_columns_name_the_table(tables):
    paths, metrics = tables
    with pytest.raises(plots.PlotDataError, match="evaluation table has no rows with dataset=sketch"):
        plots.plot_interpolation_paths(paths, metrics, "sketch")
    with pytest.raises(plots.PlotDataError, match="pruning table lacks column"):
        plots.plot_pruning(paths, paths, metrics, "ood")


def test_save_figure_writes_png_and_pdf_and_leaves_no_temporary_files(tables, tmp_path):
    paths, metrics = tables
    fig = plots.plot_interpolation_paths(paths, metrics, "ood")
    out = [tmp_path / "fig" / "f.png", tmp_path / "fig" / "f.pdf"]
    plots.save_figure(fig, out, dpi=50)
    assert out[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out[1].read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == ["f.pdf", "f.png"]


# -- Figures 2-5 show their tables' numbers ---------------------------------------------------

LAYERS = ["visual.conv1", "visual.transformer.resblocks.0.attn", "classification_head"]


def layer_table(metric: str, value, models=("model_a", "model_b", "model_c"), alphas=np.linspace(0, 1, 5)) -> pd.DataFrame:
    rows = []
    for m_i, model in enumerate(models):
        for l_i, layer in enumerate(LAYERS):
            for alpha in alphas:
                rows.append(dict(model=model, dataset="ood", alpha=alpha, layer=layer, metric=metric,
                                 value=value(m_i, l_i, alpha), stderr=0.01, rho=1.0, mode="perturb_finetuned",
                                 n_nonfinite=int(model == "model_a" and l_i == 1 and alpha == 1.0)))
    return pd.DataFrame(rows)


def heatmap_values(ax) -> np.ndarray:
    mesh = next(c for c in ax.collections if hasattr(c, "get_array") and c.get_array() is not None)
    return np.asarray(mesh.get_array()).reshape(len(LAYERS), -1)


def test_figure2_heat_maps_hold_the_tables_accuracies(tables):
    _, metrics = tables
    layerwise = layer_table("accuracy", lambda m, l, a: 0.3 + 0.1 * m + 0.01 * l * a)
    layerwise = pd.concat([layerwise, layerwise.assign(split="selection", value=0.0)]).fillna({"split": "all"})
    fig = plots.plot_layerwise_interpolation(layerwise, metrics, "ood")
    picks = plots.representative_models(metrics, "ood")
    heat_axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in heat_axes] == [f"{m} ({plots.OUTCOME_TEXT[o]})" for m, o in picks]
    for ax, (model, _) in zip(heat_axes, picks):
        rows = layerwise[(layerwise["model"] == model) & (layerwise["split"] == "all")]
        expected = 100 * rows.pivot_table(index="layer", columns="alpha", values="value").reindex(LAYERS).to_numpy()
        np.testing.assert_allclose(heatmap_values(ax), expected)  # the selection rows (0.0) are not drawn


def interpolation_stragglers(flagged: dict[str, int]) -> pd.DataFrame:
    """A straggler table with ``flagged[model]`` layers by interpolation on "ood" (and one
    sharpness straggler and one other set's interpolation straggler for model_b, which must not count)."""
    rows = [dict(model=m, dataset="ood", criterion="interpolation", layer=LAYERS[i], straggler=i < k)
            for m, k in flagged.items() for i in range(len(LAYERS))]
    rows += [dict(model="model_b", dataset="ood", criterion="sharpness", layer=layer, straggler=True) for layer in LAYERS]
    rows += [dict(model="model_b", dataset="other", criterion="interpolation", layer=layer, straggler=True) for layer in LAYERS]
    return pd.DataFrame(rows)


def test_figure2_adds_the_model_with_the_most_interpolation_stragglers(tables):
    _, metrics = tables
    contrast = plots.representative_models(metrics, "ood")  # model_a (failure mode), model_c (high gain)
    most_b = interpolation_stragglers({"model_a": 1, "model_b": 2, "model_c": 0})
    assert plots.figure2_models(metrics, "ood", most_b) == [*contrast, ("model_b", plots.INTERPOLATION_STRAGGLERS)]
    # the leader is drawn already, or there is none: only the paper's two panels
    assert plots.figure2_models(metrics, "ood", interpolation_stragglers({"model_a": 3, "model_b": 2})) == contrast
    assert plots.figure2_models(metrics, "ood", interpolation_stragglers({"model_b": 0})) == contrast
    assert plots.figure2_models(metrics, "ood", None) == contrast

    layerwise = layer_table("accuracy", lambda m, l, a: 0.3 + 0.1 * m + 0.01 * l * a).assign(split="all")
    fig = plots.plot_layerwise_interpolation(layerwise, metrics, "ood", most_b)
    heat_axes = [ax for ax in fig.axes if ax.get_title()]
    assert len(heat_axes) == 3 and heat_axes[2].get_title() == "model_b (gain): most stragglers by interpolation"
    expected = 100 * layerwise[layerwise["model"] == "model_b"].pivot_table(
        index="layer", columns="alpha", values="value").reindex(LAYERS).to_numpy()
    np.testing.assert_allclose(heatmap_values(heat_axes[2]), expected)


def test_figure3_lines_are_the_tables_sharpness_with_its_errors(tables):
    _, metrics = tables
    rows = layer_table("general_sharpness", lambda m, l, a: 1 + m + a).query("layer == 'visual.conv1'").assign(layer="all")
    fig = plots.plot_general_sharpness(rows, metrics, "ood", rho=1.0)
    (ax,) = fig.axes
    drawn = {c.get_label(): np.asarray(c.lines[0].get_ydata(), dtype=float) for c in ax.containers}
    labels = plots.model_labels(metrics, "ood")
    for model in ("model_a", "model_b", "model_c"):
        expected = rows[rows["model"] == model].sort_values("alpha")["value"].to_numpy()
        np.testing.assert_allclose(drawn[labels[model]], expected)
        errors = next(c for c in ax.containers if c.get_label() == labels[model]).lines[2][0].get_segments()
        np.testing.assert_allclose([seg[1][1] - seg[0][1] for seg in errors], 2 * 0.01)


def test_figure4_marks_alpha_star_stragglers_and_nonfinite_cells(tables):
    _, metrics = tables
    layerwise = layer_table("layerwise_sharpness", lambda m, l, a: (l + 1) * a * (m + 1))
    stragglers = pd.DataFrame([dict(model="model_c", criterion="sharpness", layer="visual.conv1", straggler=True),
                               dict(model="model_a", criterion="sharpness", layer="visual.conv1", straggler=False)])
    fig = plots.plot_layerwise_sharpness(layerwise, metrics, "ood", stragglers, per_outcome=1)
    heat_axes = [ax for ax in fig.axes if ax.get_title()]
    star = metrics.set_index("model")["alpha_star"]
    columns = np.linspace(0, 1, 5)
    for ax, (model, _) in zip(heat_axes, plots.representative_models(metrics, "ood", 1)):
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert len(dashed) == 1
        assert dashed[0].get_xdata()[0] == int(np.argmin(np.abs(columns - star[model]))) + 0.5
        red = {t.get_text() for t in ax.get_yticklabels() if t.get_color() == "red"}
        assert red == ({"conv1"} if model == "model_c" else set())
        marks = [(t.get_position()) for t in ax.texts if t.get_text() == "x"]
        # model_a's attention layer at alpha 1 (row 1, last column) dropped a non-finite draw.
        assert marks == ([(4.5, 1.5)] if model == "model_a" else [])


def test_figure5_draws_the_mask_mean_and_says_when_nothing_was_pruned(tables):
    paths, metrics = tables
    pruned = []
    for seed, shift in ((0, 0.01), (1, 0.03)):
        rows = paths[paths["model"] != "model_b"].copy()
        rows["value"] = rows["value"] + np.where(rows["alpha"] > 0, shift, 0.0)
        pruned.append(rows.assign(mask_seed=seed, n_pruned_layers=2))
    pruned.append(paths[paths["model"] == "model_b"].assign(mask_seed=0, n_pruned_layers=0))
    pruning = pd.concat(pruned, ignore_index=True)
    fig = plots.plot_pruning(pruning, paths, metrics, "ood")
    axes = {ax.get_title().split(" ")[0]: ax for ax in fig.axes if ax.get_title()}
    a = axes["model_a"]
    mean_line = next(line for line in a.get_lines() if line.get_label().startswith("pruned"))
    original = paths[(paths["model"] == "model_a") & (paths["metric"] == "accuracy")].sort_values("alpha")["value"].to_numpy()
    np.testing.assert_allclose(mean_line.get_ydata(), 100 * (original + np.where(np.linspace(0, 1, 5) > 0, 0.02, 0)))
    b = axes["model_b"]
    assert "no straggler: nothing pruned" in b.get_title()
    assert [line.get_label() for line in b.get_lines()] == ["original"]
    assert any(t.get_text() == "no straggler: nothing pruned" for t in b.texts)
