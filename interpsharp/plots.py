"""Figures 1-5 of the paper, drawn from the pipeline's tidy tables.

Every function takes tables (``pandas.DataFrame`` in the formats the workflow writes) and plain
values and returns a matplotlib ``Figure``; :func:`save_figure` writes it as PNG and PDF,
atomically. Nothing here computes a result: gains, depths, alpha* and outcome labels come from
the path-metrics table (:mod:`interpsharp.metrics`), so a figure can never disagree with the
numbers reported beside it.

Alpha follows WiSE-FT everywhere: alpha = 0 is the zero-shot model, alpha = 1 the fine-tuned
one (the paper plots the reverse direction). Figures describe whole sets: rows of a table's
``split`` column other than ``all`` (the selection and held-out parts) are not drawn, and the
alpha* marked is the in-sample one of the path-metrics table.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window (CI, SLURM nodes)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import SymLogNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from interpsharp.metrics import FAILURE_MODE, GAIN, HIGH_GAIN, NOTHING_PRUNED  # noqa: E402

OUTCOME_TEXT = {FAILURE_MODE: "failure mode", GAIN: "gain", HIGH_GAIN: "high gain"}
ALPHA_LABEL = r"$\alpha$  (0 = zero-shot, 1 = fine-tuned)"


class PlotDataError(ValueError):
    """A table that lacks what a figure needs; the message says which table and what."""


# -- helpers ------------------------------------------------------------------------------

def short_layer_name(layer: str) -> str:
    """``visual.transformer.resblocks.3.mlp.c_fc`` -> ``b3.mlp.c_fc``; ``visual.`` dropped:
    79 full names do not fit on a heat map's axis."""
    name = re.sub(r"^visual\.transformer\.resblocks\.(\d+)\.", r"b\1.", layer)
    return name.removeprefix("visual.")


def _require(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise PlotDataError(f"{what} table lacks column(s) {', '.join(missing)} (has {', '.join(map(str, table.columns))})")


def _rows(table: pd.DataFrame, what: str, **equal: object) -> pd.DataFrame:
    """Rows where every ``column == value`` (and ``split == "all"`` where the table has splits);
    empty is an error naming the selection."""
    _require(table, list(equal), what)
    if "split" in table.columns and "split" not in equal:
        equal = {**equal, "split": "all"}
    mask = np.ones(len(table), dtype=bool)
    for column, value in equal.items():
        mask &= (table[column] == value).to_numpy()
    rows = table[mask]
    if rows.empty:
        wanted = ", ".join(f"{k}={v}" for k, v in equal.items())
        raise PlotDataError(f"{what} table has no rows with {wanted}")
    return rows


def model_labels(path_metrics: pd.DataFrame, dataset: str) -> dict[str, str]:
    """``model -> "model_2 (failure mode)"`` for the legend, from the path-metrics table."""
    rows = _rows(path_metrics, "path metrics", dataset=dataset)
    _require(rows, ["model", "outcome"], "path metrics")
    return {m: f"{m} ({OUTCOME_TEXT.get(o, o)})" for m, o in zip(rows["model"], rows["outcome"])}


def representative_models(path_metrics: pd.DataFrame, dataset: str, per_outcome: int = 1) -> list[tuple[str, str]]:
    """``(model, outcome)`` pairs to show in the per-model panels of Figures 2 and 4.

    The paper contrasts failure-mode models with high-gain ones: take the ``per_outcome``
    failure-mode models with the deepest barriers and the high-gain models with the largest
    gains. A world without one of the two outcomes shows the models with the smallest
    (resp. largest) gain instead, under their own label.
    """
    rows = _rows(path_metrics, "path metrics", dataset=dataset)
    _require(rows, ["model", "outcome", "gain", "barrier_depth"], "path metrics")
    failures = rows[rows["outcome"] == FAILURE_MODE].sort_values(["barrier_depth", "model"], ascending=[False, True])
    winners = rows[rows["outcome"] == HIGH_GAIN].sort_values(["gain", "model"], ascending=[False, True])
    if failures.empty:
        failures = rows.sort_values(["gain", "model"])
    if winners.empty:
        winners = rows.sort_values(["gain", "model"], ascending=[False, True])
    picked: list[tuple[str, str]] = []
    for group in (failures, winners):
        fresh = group[~group["model"].isin([model for model, _ in picked])].head(per_outcome)
        picked.extend(zip(fresh["model"], fresh["outcome"]))
    return picked


#: Figure 2's panel for the model whose single-layer moves matter most (see ``figure2_models``).
INTERPOLATION_STRAGGLERS = "stragglers by interpolation"


def figure2_models(path_metrics: pd.DataFrame, dataset: str, stragglers: pd.DataFrame | None = None,
                   per_outcome: int = 1) -> list[tuple[str, str]]:
    """``(model, label)`` pairs for Figure 2's panels.

    The paper's contrast (``representative_models``), plus the model with the most straggler
    layers by interpolation (Def. 1.1, on ``dataset``) when it is not among them, labelled
    ``INTERPOLATION_STRAGGLERS``. Layer-wise interpolation exists to find such layers; without
    that panel a figure drawn from two models can miss the only single-layer moves that are
    larger than the evaluation noise (the demo world: its failure-mode and high-gain models
    move by about a point per layer, the recipe with switched-off branches by 15). Ties go to
    the first model in name order.
    """
    picked = representative_models(path_metrics, dataset, per_outcome)
    if stragglers is None or stragglers.empty:
        return picked
    if "dataset" in stragglers.columns:
        stragglers = stragglers[stragglers["dataset"] == dataset]
    counts = {model: len(_straggler_layers(stragglers, model, "interpolation"))
              for model in sorted(stragglers["model"].astype(str).unique())}
    leader = max(counts, key=counts.get, default=None)  # the first of equal counts in name order
    if leader is None or counts[leader] == 0 or leader in {model for model, _ in picked}:
        return picked
    return [*picked, (leader, INTERPOLATION_STRAGGLERS)]


def save_figure(fig: Figure, paths: Iterable[str | os.PathLike], dpi: int = 150) -> None:
    """Write ``fig`` to each path (format from the suffix) via a temporary file and rename,
    so an interrupted job never leaves a truncated image that looks finished."""
    for path in map(Path, paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        try:
            fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip("."), bbox_inches="tight")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    plt.close(fig)


def _palette(models: Sequence[str]) -> dict[str, tuple]:
    return dict(zip(models, sns.color_palette("tab10" if len(models) <= 10 else "husl", len(models))))


def _layer_heatmap(ax, matrix: pd.DataFrame, cmap: str, norm=None, cbar_label: str = "", vmin=None, vmax=None) -> None:
    sns.heatmap(matrix, ax=ax, cmap=cmap, norm=norm, vmin=vmin, vmax=vmax, cbar_kws={"label": cbar_label},
                xticklabels=[f"{a:g}" for a in matrix.columns], yticklabels=[short_layer_name(l) for l in matrix.index])
    ax.set_xlabel(ALPHA_LABEL)
    ax.set_ylabel("layer (forward order)")
    ax.tick_params(axis="y", labelsize=max(3, min(8, 400 // max(1, len(matrix)))))


def _layer_matrix(rows: pd.DataFrame, value: str = "value") -> pd.DataFrame:
    """layer x alpha matrix, layers in the order they first appear (the forward order)."""
    layers = list(dict.fromkeys(rows["layer"]))
    matrix = rows.pivot_table(index="layer", columns="alpha", values=value, aggfunc="mean")
    return matrix.reindex(layers)


def _mark_alpha(ax, matrix: pd.DataFrame, alpha: float, label: str) -> None:
    """Dashed vertical line through the heat-map column of ``alpha``."""
    columns = np.asarray(matrix.columns, dtype=float)
    column = int(np.argmin(np.abs(columns - alpha)))
    ax.axvline(column + 0.5, color="black", linestyle="--", linewidth=1.2, label=label)


# -- Figure 1 -----------------------------------------------------------------------------

def plot_interpolation_paths(evaluation: pd.DataFrame, path_metrics: pd.DataFrame, dataset: str) -> Figure:
    """Accuracy and loss on ``dataset`` along alpha, one line per model; the best accuracy
    (alpha*, gain) and the highest loss (barrier depth) of each path are marked."""
    _require(evaluation, ["model", "dataset", "alpha", "metric", "value"], "evaluation")
    rows = _rows(evaluation, "evaluation", dataset=dataset)
    metrics = _rows(path_metrics, "path metrics", dataset=dataset).set_index("model")
    labels = model_labels(path_metrics, dataset)
    models = sorted(rows["model"].unique(), key=lambda m: (-metrics.loc[m, "gain"], m))
    colours = _palette(models)
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
    for model in models:
        path = rows[rows["model"] == model].sort_values("alpha")
        acc = path[path["metric"] == "accuracy"]
        loss = path[path["metric"] == "loss"]
        m = metrics.loc[model]
        ax_acc.plot(acc["alpha"], 100 * acc["value"], marker="o", markersize=3, color=colours[model], label=labels[model])
        ax_acc.plot([m["alpha_star"]], [100 * m["acc_best"]], marker="*", markersize=13, color=colours[model],
                    markeredgecolor="black")
        ax_loss.plot(loss["alpha"], loss["value"], marker="o", markersize=3, color=colours[model])
        ax_loss.plot([m["alpha_loss_max"]], [m["loss_max"]], marker="v", markersize=9, color=colours[model],
                     markeredgecolor="black")
    ax_acc.set_ylabel(f"{dataset} top-1 accuracy (%)")
    ax_acc.set_title("accuracy; star = best (gain at alpha*)")
    ax_loss.set_ylabel(f"{dataset} loss (cross-entropy)")
    ax_loss.set_title("loss; triangle = highest (barrier depth)")
    for ax in (ax_acc, ax_loss):
        ax.set_xlabel(ALPHA_LABEL)
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize=7, loc="best")
    fig.suptitle(f"Figure 1: WiSE-FT interpolation paths on {dataset}")
    fig.tight_layout()
    return fig


# -- Figure 2 -----------------------------------------------------------------------------

def plot_layerwise_interpolation(layerwise: pd.DataFrame, path_metrics: pd.DataFrame, dataset: str,
                                 stragglers: pd.DataFrame | None = None, per_outcome: int = 1) -> Figure:
    """Heat maps layer x alpha of the accuracy on ``dataset`` when only that layer is
    interpolated, for failure-mode and high-gain models and the model with the most stragglers
    by interpolation (``figure2_models``)."""
    _require(layerwise, ["model", "dataset", "alpha", "metric", "value", "layer"], "layer-wise interpolation")
    rows = _rows(layerwise, "layer-wise interpolation", dataset=dataset, metric="accuracy")
    picks = figure2_models(path_metrics, dataset, stragglers, per_outcome)
    matrices = [(model, outcome, _layer_matrix(_rows(rows, "layer-wise interpolation", model=model)) * 100)
                for model, outcome in picks]
    vmin = min(m.min().min() for _, _, m in matrices)
    vmax = max(m.max().max() for _, _, m in matrices)
    n_layers = max(len(m) for _, _, m in matrices)
    fig, axes = plt.subplots(1, len(matrices), figsize=(6 * len(matrices), 2 + 0.12 * n_layers), squeeze=False)
    labels = model_labels(path_metrics, dataset)
    for ax, (model, outcome, matrix) in zip(axes[0], matrices):
        _layer_heatmap(ax, matrix, "viridis", vmin=vmin, vmax=vmax, cbar_label=f"{dataset} accuracy (%)")
        title = f"{model} ({OUTCOME_TEXT.get(outcome, outcome)})"
        if outcome == INTERPOLATION_STRAGGLERS:
            title = f"{labels.get(model, model)}: most {INTERPOLATION_STRAGGLERS}"
        ax.set_title(title)
    fig.suptitle(f"Figure 2: layer-wise interpolation (one layer moves, the rest stay zero-shot), {dataset}")
    fig.tight_layout()
    return fig


# -- Figure 3 -----------------------------------------------------------------------------

def plot_general_sharpness(sharpness: pd.DataFrame, path_metrics: pd.DataFrame, dataset: str, rho: float) -> Figure:
    """General adaptive sharpness along alpha at radius ``rho``, one line per model, with
    one-standard-error bars; the legend carries each model's outcome on ``dataset``."""
    _require(sharpness, ["model", "alpha", "metric", "value", "stderr", "rho"], "general sharpness")
    rows = sharpness[(sharpness["metric"] == "general_sharpness") & np.isclose(sharpness["rho"], rho)]
    if rows.empty:
        raise PlotDataError(f"general sharpness table has no rows at rho = {rho} (has rho {sorted(sharpness['rho'].dropna().unique())})")
    measured_on = ", ".join(sorted(rows["dataset"].unique())) if "dataset" in rows else dataset
    labels = model_labels(path_metrics, dataset)
    models = sorted(rows["model"].unique())
    colours = _palette(models)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for model in models:
        path = rows[rows["model"] == model].sort_values("alpha")
        ax.errorbar(path["alpha"], path["value"], yerr=path["stderr"], marker="o", markersize=3, capsize=2,
                    color=colours[model], label=labels.get(model, model))
    ax.set_xlabel(ALPHA_LABEL)
    ax.set_ylabel(f"adaptive sharpness, rho = {rho:g}")
    ax.set_title(f"Figure 3: general sharpness along the path ({measured_on})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# -- Figure 4 -----------------------------------------------------------------------------

def plot_layerwise_sharpness(sharpness: pd.DataFrame, path_metrics: pd.DataFrame, dataset: str,
                             stragglers: pd.DataFrame | None = None, per_outcome: int = 2) -> Figure:
    """Heat maps layer x alpha of layer-wise sharpness (symmetric-log colours: near-zero
    layers stand out) for failure-mode and high-gain models, alpha* dashed; straggler layers
    by sharpness (``stragglers`` rows with ``criterion == "sharpness"``) in red."""
    _require(sharpness, ["model", "alpha", "layer", "metric", "value"], "layer-wise sharpness")
    rows = _rows(sharpness, "layer-wise sharpness", metric="layerwise_sharpness")
    metrics = _rows(path_metrics, "path metrics", dataset=dataset).set_index("model")
    picks = representative_models(path_metrics, dataset, per_outcome)
    matrices = [(model, outcome, _layer_matrix(_rows(rows, "layer-wise sharpness", model=model))) for model, outcome in picks]
    peak = max(float(np.nanmax(np.abs(m.to_numpy()))) for _, _, m in matrices) or 1.0
    norm = SymLogNorm(linthresh=max(peak * 1e-4, 1e-8), vmin=-peak, vmax=peak)
    n_layers = max(len(m) for _, _, m in matrices)
    cols = min(2, len(matrices))
    nrows = int(np.ceil(len(matrices) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(6.5 * cols, nrows * (2 + 0.12 * n_layers)), squeeze=False)
    for ax, (model, outcome, matrix) in zip(axes.flat, matrices):
        _layer_heatmap(ax, matrix, "RdBu_r", norm=norm, cbar_label="layer-wise sharpness (symlog)")
        _mark_alpha(ax, matrix, float(metrics.loc[model, "alpha_star"]), "alpha*")
        if "n_nonfinite" in rows.columns:
            _mark_nonfinite(ax, _layer_matrix(_rows(rows, "layer-wise sharpness", model=model), "n_nonfinite"))
        marked = _straggler_layers(stragglers, model, "sharpness")
        for tick, layer in zip(ax.get_yticklabels(), matrix.index):
            if layer in marked:
                tick.set_color("red")
                tick.set_fontweight("bold")
        ax.set_title(f"{model} ({OUTCOME_TEXT.get(outcome, outcome)}); red = straggler, dashed = alpha*", fontsize=9)
    for ax in axes.flat[len(matrices):]:
        ax.set_visible(False)
    fig.suptitle("Figure 4: layer-wise sharpness along the path (x = non-finite draws left out of the mean)")
    fig.tight_layout()
    return fig


def _mark_nonfinite(ax, counts: pd.DataFrame) -> None:
    """An "x" on every heat-map cell whose estimate dropped non-finite draws: its mean is over
    fewer draws and biased low (the draws that blew up were the sharpest)."""
    rows, cols = np.nonzero(counts.fillna(0).to_numpy() > 0)
    for i, j in zip(rows, cols):
        ax.text(j + 0.5, i + 0.5, "x", ha="center", va="center", color="black", fontsize=7, fontweight="bold")


def _straggler_layers(stragglers: pd.DataFrame | None, model: str, criterion: str) -> set[str]:
    if stragglers is None or stragglers.empty:
        return set()
    _require(stragglers, ["model", "layer", "criterion", "straggler"], "stragglers")
    rows = stragglers[(stragglers["model"] == model) & (stragglers["criterion"] == criterion)]
    flags = rows["straggler"].astype(str).str.lower() == "true"
    return set(rows.loc[flags, "layer"])


# -- Figure 5 -----------------------------------------------------------------------------

def plot_pruning(pruning: pd.DataFrame, evaluation: pd.DataFrame, path_metrics: pd.DataFrame, dataset: str) -> Figure:
    """Accuracy on ``dataset`` along alpha, original path (solid) against the pruned paths
    (dashed: mean over mask seeds, band = min..max), one panel per model; panel titles give
    the outcome and how many layers were pruned. A model with no straggler layer shows its
    original path only, marked "no straggler: nothing pruned": its "pruned" path is the
    original one, and drawing it would suggest pruning changed nothing."""
    _require(pruning, ["model", "dataset", "alpha", "metric", "value", "mask_seed", "n_pruned_layers"], "pruning")
    pruned = _rows(pruning, "pruning", dataset=dataset, metric="accuracy")
    original = _rows(evaluation, "evaluation", dataset=dataset, metric="accuracy")
    labels = model_labels(path_metrics, dataset)
    models = sorted(pruned["model"].unique(), key=lambda m: (-int(pruned.loc[pruned["model"] == m, "n_pruned_layers"].max()), m))
    cols = min(3, len(models))
    nrows = int(np.ceil(len(models) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(4.5 * cols, 3.4 * nrows), squeeze=False, sharex=True)
    for ax, model in zip(axes.flat, models):
        base = original[original["model"] == model].sort_values("alpha")
        runs = pruned[pruned["model"] == model]
        ax.plot(base["alpha"], 100 * base["value"], color="tab:blue", label="original")
        n_pruned = int(runs["n_pruned_layers"].max())
        if n_pruned:
            stats = runs.groupby("alpha")["value"].agg(["mean", "min", "max"]).reset_index()
            ax.plot(stats["alpha"], 100 * stats["mean"], color="tab:red", linestyle="--",
                    label=f"pruned ({runs['mask_seed'].nunique()} masks)")
            ax.fill_between(stats["alpha"], 100 * stats["min"], 100 * stats["max"], color="tab:red", alpha=0.2)
            note = f"{n_pruned} straggler layer(s) pruned"
        else:
            note = NOTHING_PRUNED
            ax.text(0.5, 0.5, NOTHING_PRUNED, transform=ax.transAxes, ha="center", va="center", fontsize=9,
                    color="dimgray", bbox={"facecolor": "white", "edgecolor": "lightgray"})
        ax.set_title(f"{labels.get(model, model)}\n{note}", fontsize=9)
        ax.set_xlabel(ALPHA_LABEL, fontsize=8)
        ax.set_ylabel(f"{dataset} accuracy (%)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.flat[len(models):]:
        ax.set_visible(False)
    fig.suptitle(f"Figure 5: straggler pruning (Algorithm 1), {dataset}")
    fig.tight_layout()
    return fig
