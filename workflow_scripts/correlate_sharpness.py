"""Kendall tau and Spearman rho (bootstrap intervals over models) between every per-model
sharpness measure of the summary table and the OOD gain."""

from workflow_job import start

start(snakemake, torch_threads=False)

from interpsharp.statistics import rank_correlations
from interpsharp.tables import read_tsv, write_tsv

summary = read_tsv(snakemake.input[0], required=["model", "dataset", "gain"])
numeric = summary.select_dtypes("number").columns
measures = [c for c in numeric if "sharpness" in c or "instability" in c or c == "barrier_depth"]
table = rank_correlations(
    summary, measures, "gain", n_boot=snakemake.params.n_boot, seed=snakemake.params.seed,
    confidence=snakemake.params.confidence, by=["dataset"],
)
write_tsv(table, snakemake.output[0])
