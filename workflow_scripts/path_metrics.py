"""Instability, barrier depth, gain, alpha* and outcome label of every path in a path table
(plain paths, or pruned paths keyed by mask seed)."""

from workflow_job import start

start(snakemake, torch_threads=False)

from interpsharp.metrics import OutcomeThresholds, path_metrics
from interpsharp.tables import read_tsv, write_tsv

thresholds = OutcomeThresholds(
    delta=snakemake.params.delta, xi=snakemake.params.xi, tolerance=snakemake.params.tolerance
)
write_tsv(path_metrics(read_tsv(snakemake.input[0]), thresholds), snakemake.output[0])
