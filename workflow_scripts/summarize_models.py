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


def at_alpha(table: pd.DataFrame, alpha_of_model: pd.Series) -> pd.DataFrame:
    """Rows of ``table`` at its model's alpha (e.g. each model's alpha*)."""
    wanted = table["model"].map(alpha_of_model).astype(float)
    return table[np.isclose(table["alpha"].astype(float), wanted)]


alpha_one = pd.Series(1.0, index=summary.index)
general = read_tsv(snakemake.input.general_sharpness)
general = general[general["metric"] == "general_sharpness"]
for rho, rows in general.groupby("rho"):
    suffix = "" if np.isclose(rho, params.rho) else f"_rho{rho:g}"
    summary[f"general_sharpness{suffix}_alpha1"] = at_alpha(rows, alpha_one).set_index("model")["value"]
    summary[f"general_sharpness{suffix}_alpha_star"] = at_alpha(rows, summary["alpha_star"]).set_index("model")["value"]

layerwise = read_tsv(snakemake.input.layerwise_sharpness)
layerwise = layerwise[layerwise["metric"] == "layerwise_sharpness"]
# "Nearly zero" is about magnitude: Monte-Carlo noise scatters a flat layer around 0 both ways.
layerwise = layerwise.assign(value=layerwise["value"].abs())
summary["min_abs_layerwise_sharpness_alpha1"] = at_alpha(layerwise, alpha_one).groupby("model")["value"].min()
summary["min_abs_layerwise_sharpness_alpha_star"] = at_alpha(layerwise, summary["alpha_star"]).groupby("model")["value"].min()

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
