"""Accuracy and loss of theta(alpha) on every evaluation set, for the alphas of one path job."""

from workflow_job import load_caches, load_endpoints, start, write_per_alpha

start(snakemake)

from interpsharp.evaluate import evaluate_path

model, path = load_endpoints(
    snakemake.input.zeroshot, snakemake.input.finetuned, snakemake.params.device, snakemake.params.head_width
)
caches = load_caches(dict(zip(snakemake.params.datasets, snakemake.input.caches)))
table = evaluate_path(
    model,
    path,
    caches,
    snakemake.params.alphas,
    model_name=snakemake.wildcards.model,
    batch_size=snakemake.params.batch_size,
    device=snakemake.params.device,
    precision=snakemake.params.precision,
)
write_per_alpha(table, snakemake.params.alphas, list(snakemake.output))
