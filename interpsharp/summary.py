"""SPEC's per-model table on the main OOD set, assembled from the pipeline's tables, with every
measure that could come out of its own definition rather than the data left out and said why.

The paper's layer-wise claims are about alpha*, but a measure taken *at* alpha* is degenerate
for every failure mode: alpha* = 0 there, so the model evaluated is theta_0 itself, the same for
every failure mode, and in ``perturb_finetuned`` mode the noise ``alpha * rho * |W1|`` vanishes,
so every layer's sharpness is exactly 0. Correlating that with the gain would confirm "a layer
with near-zero sharpness at alpha* means failure" by construction. Such cells are NaN here,
with the reason in the column beside them, and the correlation table reports how many models
entered each measure. Measures at a fixed alpha (1, the fine-tuned model) are defined for
every model and carry the between-model comparison.

alpha* is the selection part's (:mod:`interpsharp.heldout`), so a measure taken at alpha* never
uses a choice made on the images a gain is scored on; the in-sample columns (``outcome``,
``gain``, ``alpha_star``: chosen and scored on all images) stay beside it for comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from interpsharp.metrics import DEGENERATE_INTERPOLATION, NOTHING_PRUNED, degenerate_interpolation_paths
from interpsharp.sharpness_modes import PERTURB_FINETUNED
from interpsharp.stragglers import straggler_overlap, stragglers_by_sharpness
from interpsharp.subsets import ALL, SELECTION

# Alphas arrive from linspace grids and TSV text; far below any grid step we use.
_ALPHA_ATOL = 1e-9


@dataclass(frozen=True)
class SummarySettings:
    """The config values the summary depends on (each written into the table's columns)."""

    main_ood: str
    rho: float
    mode: str
    eps: float
    eps_rel: float
    k: float
    delta: float
    reference: str


def degenerate_at_alpha_star_reason(measure: str, mode: str | None = None) -> str:
    """Why a measure taken at alpha* = 0 is left out (``mode`` for layer-wise sharpness)."""
    if measure == "layerwise" and mode == PERTURB_FINETUNED:
        return ("alpha* = 0 (failure mode on the selection part): perturb_finetuned noise alpha* rho |W1| vanishes, "
                "so every layer's sharpness is 0 by construction")
    return ("alpha* = 0 (failure mode on the selection part): the value would be the zero-shot model's, "
            "the same for every failure mode")


def model_summary(
    path_metrics: pd.DataFrame,
    heldout: pd.DataFrame,
    general: pd.DataFrame,
    layerwise: pd.DataFrame,
    instability: pd.DataFrame,
    stragglers: pd.DataFrame,
    pruning: pd.DataFrame,
    pruning_metrics: pd.DataFrame,
    settings: SummarySettings,
) -> pd.DataFrame:
    """One row per fine-tuned model on ``settings.main_ood`` (see the module docstring).

    Inputs are the workflow's tables: path metrics, held-out gains, general and layer-wise
    sharpness, layer-wise instability (both Def. 1.1 readings), stragglers, the pruned paths
    and their metrics.
    """
    dataset = settings.main_ood
    metrics = path_metrics[(path_metrics["dataset"] == dataset) & (_split(path_metrics) == ALL)]
    summary = metrics.set_index("model")[
        ["dataset", "outcome", "gain", "alpha_star", "barrier_depth", "has_barrier", "instability",
         "acc_zero_shot", "acc_fine_tuned", "acc_best", "delta", "xi", "tolerance"]
    ].copy()
    models = summary.index

    original = heldout[(heldout["path"] == "original") & (heldout["dataset"] == dataset)].set_index("model")
    for column, source in (("alpha_star_selection", "alpha_star_selection"), ("outcome_selection", "outcome_selection"),
                           ("heldout_gain", "heldout_gain"),
                           ("heldout_gain_vs_best_endpoint", "heldout_gain_vs_best_endpoint"),
                           ("heldout_ci_low", "ci_low"), ("heldout_ci_high", "ci_high"),
                           ("heldout_outcome", "heldout_outcome")):
        summary[column] = original[source].reindex(models)
    alpha_star = summary["alpha_star_selection"].astype(float)
    at_zero = np.isclose(alpha_star, 0.0, atol=_ALPHA_ATOL)

    general = general[general["metric"] == "general_sharpness"]
    for rho, rows in general.groupby("rho"):
        suffix = "" if np.isclose(rho, settings.rho) else f"_rho{rho:g}"
        summary[f"general_sharpness{suffix}_alpha1"] = _at_alpha(rows, pd.Series(1.0, index=models)).groupby("model")["value"].first()
        column = f"general_sharpness{suffix}_alpha_star"
        summary[column] = _at_alpha(rows, alpha_star).groupby("model")["value"].first().where(~at_zero)
        summary[f"{column}_reason"] = np.where(at_zero, degenerate_at_alpha_star_reason("general"), "")
    summary["n_nonfinite_general"] = general.groupby("model")["n_nonfinite"].sum().reindex(models).fillna(0).astype(int)

    measured = layerwise[layerwise["metric"] == "layerwise_sharpness"]
    # "Nearly zero" is about magnitude: Monte-Carlo noise scatters a flat layer around 0 both ways.
    magnitude = measured.assign(value=measured["value"].abs())
    summary["min_abs_layerwise_sharpness_alpha1"] = _at_alpha(magnitude, pd.Series(1.0, index=models)).groupby("model")["value"].min()
    summary["min_abs_layerwise_sharpness_alpha_star"] = (
        _at_alpha(magnitude, alpha_star).groupby("model")["value"].min().where(~at_zero))
    summary["min_abs_layerwise_sharpness_alpha_star_reason"] = np.where(
        at_zero, degenerate_at_alpha_star_reason("layerwise", settings.mode), "")
    summary["n_nonfinite_layerwise"] = measured.groupby("model")["n_nonfinite"].sum().reindex(models).fillna(0).astype(int)
    flat = _flat_layers_along_path(measured, settings)
    summary["n_flat_layers_alpha_star"] = [
        flat.get((m, a), math.nan) if not z else math.nan for m, a, z in zip(models, alpha_star, at_zero)]
    summary["share_other_points_with_flat_layer"] = [
        _share_other_points(flat, m, a) if not z else math.nan for m, a, z in zip(models, alpha_star, at_zero)]

    configured = instability[(instability["dataset"] == dataset) & (_split(instability) == SELECTION)
                             & (instability["reference"] == settings.reference)]
    summary["max_layerwise_instability"] = configured.groupby("model")["instability"].max()

    by_sharpness = stragglers[stragglers["criterion"] == "sharpness"]
    overlap = straggler_overlap(stragglers[stragglers["criterion"] == "interpolation"], by_sharpness).set_index("model")
    summary = summary.join(overlap.add_prefix("stragglers_"))
    by_interp = stragglers[stragglers["criterion"] == "interpolation"]
    if "degenerate" in by_interp.columns:
        degenerate = (by_interp["degenerate"].astype(str).str.lower() == "true").groupby(by_interp["model"]).all()
        degenerate = degenerate.reindex(models).fillna(False).astype(bool)
    else:
        degenerate = pd.Series(False, index=models)
    summary["stragglers_n_by_interpolation"] = summary["stragglers_n_by_interpolation"].where(~degenerate)
    summary["stragglers_n_by_interpolation_reason"] = np.where(degenerate, DEGENERATE_INTERPOLATION, "")
    summary["n_undecidable_by_sharpness"] = (
        by_sharpness.assign(u=by_sharpness["undecidable"].astype(str).str.lower() == "true").groupby("model")["u"].sum()
        .reindex(models).fillna(0).astype(int))

    pruned_paths = pruning[pruning["dataset"] == dataset].groupby("model")
    summary["n_pruned_layers"] = pruned_paths["n_pruned_layers"].max().reindex(models)
    summary["n_pruned_parameters"] = pruned_paths["n_pruned_parameters"].max().reindex(models)
    summary["pruning_note"] = np.where(summary["n_pruned_layers"].fillna(0) == 0, NOTHING_PRUNED, "")
    pruned = pruning_metrics[(pruning_metrics["dataset"] == dataset) & (_split(pruning_metrics) == ALL)].groupby("model")
    summary["pruned_gain_mean"] = pruned["gain"].mean()
    summary["pruned_acc_best_mean"] = pruned["acc_best"].mean()
    summary["pruned_outcomes"] = pruned["outcome"].agg(lambda o: ",".join(o))
    pruned_heldout = heldout[(heldout["path"] == "pruned") & (heldout["dataset"] == dataset)].groupby("model")
    summary["pruned_heldout_gain_mean"] = pruned_heldout["heldout_gain"].mean()
    summary["pruned_heldout_outcomes"] = pruned_heldout["heldout_outcome"].agg(lambda o: ",".join(o))
    return summary.reset_index()


def straggler_sets(instability: pd.DataFrame, stragglers: pd.DataFrame, settings: SummarySettings,
                   path_metrics: pd.DataFrame) -> pd.DataFrame:
    """The straggler overlap table: per model, the layers flagged by sharpness and by
    interpolation under *both* readings of Def. 1.1 (the configured one decides pruning),
    their intersections and Jaccard indices, all chosen on the selection part."""
    rows = instability[(instability["dataset"] == settings.main_ood) & (_split(instability) == SELECTION)]
    by_sharpness = stragglers[stragglers["criterion"] == "sharpness"]
    tables = []
    for reference, part in rows.groupby("reference"):
        degenerate = degenerate_interpolation_paths(part, settings.delta)
        flagged = part[~degenerate & (part["instability"] > settings.delta + 1e-12)]
        interp = {m: list(flagged.loc[flagged["model"] == m, "layer"]) for m in part["model"].unique()}
        table = straggler_overlap(interp, by_sharpness)
        all_degenerate = degenerate.groupby(part["model"]).all()
        table["degenerate"] = table["model"].map(all_degenerate).fillna(False).astype(bool)
        table["note"] = np.where(table["degenerate"], DEGENERATE_INTERPOLATION, "")
        tables.append(table.assign(reference=reference, configured=reference == settings.reference, delta=settings.delta))
    models = path_metrics["model"].drop_duplicates()
    out = pd.concat(tables, ignore_index=True)
    order = {m: i for i, m in enumerate(models)}
    return out.sort_values(["model", "reference"], key=lambda c: c.map(order) if c.name == "model" else c).reset_index(drop=True)


def _split(table: pd.DataFrame) -> pd.Series:
    """The ``split`` column, or ``all`` for tables written before splits existed."""
    return table["split"] if "split" in table.columns else pd.Series(ALL, index=table.index)


def _at_alpha(table: pd.DataFrame, alpha_of_model: pd.Series) -> pd.DataFrame:
    """Rows of ``table`` at their model's alpha (e.g. each model's alpha*)."""
    wanted = table["model"].map(alpha_of_model).astype(float)
    return table[np.isclose(table["alpha"].astype(float), wanted, atol=_ALPHA_ATOL)]


def _flat_layers_along_path(layerwise: pd.DataFrame, settings: SummarySettings) -> dict[tuple[str, float], int]:
    """``(model, alpha) -> number of layers flagged flat`` (the straggler-by-sharpness rule) at
    every alpha > 0 of the layer-wise sharpness table."""
    counts: dict[tuple[str, float], int] = {}
    for alpha in sorted(layerwise["alpha"].astype(float).unique()):
        if alpha <= _ALPHA_ATOL:
            continue
        flags = stragglers_by_sharpness(layerwise, settings.eps, settings.eps_rel, alpha=alpha, k=settings.k)
        for model, n in flags.groupby("model")["straggler"].sum().items():
            counts[(str(model), alpha)] = int(n)
    return counts


def _share_other_points(flat: dict[tuple[str, float], int], model: str, alpha_star: float) -> float:
    """Share of the model's other path points (alpha > 0, not alpha*) with a flat layer: the base
    rate that "a flat layer at alpha*" must be compared with."""
    others = [n for (m, a), n in flat.items() if m == model and not math.isclose(a, alpha_star, abs_tol=_ALPHA_ATOL)]
    return float(np.mean([n > 0 for n in others])) if others else math.nan
