"""SPEC's per-model table on the main OOD set: outcome, gain, depth, alpha*, the sharpness
measures whose rank correlation with the gain is the paper's claim, stragglers by both
criteria and what pruning them did. Assembly only: every number comes from an earlier table."""

from workflow_job import start

start(snakemake, torch_threads=False)

import numpy as np
import pandas as pd

from interpsharp.stragglers import straggler_overlap
from interpsharp.tables import read_tsv, write_tsv

params = snakemake.params
dataset = params.main_ood
metrics = read_tsv(snakemake.input.path_metrics)
summary = metrics[metrics["dataset"] == dataset].set_index("model")[
    ["dataset", "outcome", "gain", "alpha_star", "barrier_depth", "has_barrier", "instability",
     "acc_zero_shot", "acc_fine_tuned", "acc_best", "delta", "xi", "tolerance"]
]
alpha_star = summary["alpha_star"]


def at_alpha(table: pd.DataFrame, alpha: pd.Series | float) -> pd.DataFrame:
    """Rows of ``table`` at each model's ``alpha`` (a number, or one value per model)."""
    wanted = table["model"].map(alpha) if isinstance(alpha, pd.Series) else alpha
    return table[np.isclose(table["alpha"].astype(float), wanted.astype(float) if isinstance(wanted, pd.Series) else wanted)]


general = read_tsv(snakemake.input.general_sharpness)
general = general[general["metric"] == "general_sharpness"]
for rho, rows in general.groupby("rho"):
    suffix = "" if np.isclose(rho, params.rho) else f"_rho{rho:g}"
    summary[f"general_sharpness{suffix}_alpha1"] = at_alpha(rows, 1.0).set_index("model")["value"]
    summary[f"general_sharpness{suffix}_alpha_star"] = at_alpha(rows, alpha_star).set_index("model")["value"]

layerwise = read_tsv(snakemake.input.layerwise_sharpness)
layerwise = layerwise[layerwise["metric"] == "layerwise_sharpness"]
summary["min_layerwise_sharpness_alpha1"] = at_alpha(layerwise, 1.0).groupby("model")["value"].min()
summary["min_layerwise_sharpness_alpha_star"] = at_alpha(layerwise, alpha_star).groupby("model")["value"].min()

instability = read_tsv(snakemake.input.layerwise_instability)
instability = instability[instability["dataset"] == dataset]
summary["max_layerwise_instability"] = instability.groupby("model")["instability"].max()

stragglers = read_tsv(snakemake.input.stragglers)
overlap = straggler_overlap(
    stragglers[stragglers["criterion"] == "interpolation"], stragglers[stragglers["criterion"] == "sharpness"]
).set_index("model")
summary = summary.join(overlap.add_prefix("stragglers_"))

pruned = read_tsv(snakemake.input.pruning_metrics)
pruned = pruned[pruned["dataset"] == dataset].groupby("model")
summary["pruned_gain_mean"] = pruned["gain"].mean()
summary["pruned_acc_best_mean"] = pruned["acc_best"].mean()
summary["pruned_outcomes"] = pruned["outcome"].agg(lambda o: ",".join(o))
write_tsv(summary.reset_index(), snakemake.output[0])
