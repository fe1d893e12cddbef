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
