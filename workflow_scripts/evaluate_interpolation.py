"""Accuracy and loss of theta(alpha) for one (model, alpha) on every evaluation set."""

from workflow_job import load_caches, load_endpoints, start

start(snakemake)

from interpsharp.evaluate import evaluate_path
from interpsharp.tables import write_tsv

model, path = load_endpoints(
    snakemake.input.zeroshot, snakemake.input.finetuned, snakemake.params.device, snakemake.params.head_width
)
caches = load_caches(dict(zip(snakemake.params.datasets, snakemake.input.caches)))
table = evaluate_path(
    model,
    path,
    caches,
    [snakemake.params.alpha],
    model_name=snakemake.wildcards.model,
    batch_size=snakemake.params.batch_size,
    device=snakemake.params.device,
    precision=snakemake.params.precision,
)
write_tsv(table, snakemake.output[0])
