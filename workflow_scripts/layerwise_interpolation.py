"""Layer-wise interpolation paths of one model: for every layer, theta_0 with only that layer
interpolated, over every alpha, on the layer-wise evaluation sets (prefix-cached)."""

from workflow_job import load_caches, load_endpoints, start

start(snakemake)

from interpsharp.layerwise_interpolation import layerwise_interpolation
from interpsharp.tables import write_tsv

model, path = load_endpoints(
    snakemake.input.zeroshot, snakemake.input.finetuned, snakemake.params.device, snakemake.params.head_width
)
caches = load_caches(dict(zip(snakemake.params.datasets, snakemake.input.caches)))
table = layerwise_interpolation(
    model, path, caches, snakemake.params.alphas, model_name=snakemake.wildcards.model,
    batch_size=snakemake.params.batch_size, device=snakemake.params.device, precision=snakemake.params.precision,
)
write_tsv(table, snakemake.output[0])
