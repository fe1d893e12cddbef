"""Kendall tau and Spearman rho (bootstrap intervals over models) between each measure of the
explicit list in interpsharp.claims and the OOD gain (held-out and in-sample), and the verdict
on each of the paper's claims."""

from workflow_job import start

start(snakemake, torch_threads=False)

from interpsharp.claims import assess_claims, correlation_measures, correlations
from interpsharp.tables import read_tsv, write_tsv

params = snakemake.params
summary = read_tsv(snakemake.input[0], required=["model", "dataset", "gain", "heldout_gain", "heldout_outcome"])
table = correlations(summary, correlation_measures(summary, params.rho_sweep), n_boot=params.n_boot, seed=params.seed,
                     confidence=params.confidence)
write_tsv(table, snakemake.output.correlations)
claims = assess_claims(summary, table, params.confidence)
write_tsv(claims, snakemake.output.claims)
print(claims.to_string())
