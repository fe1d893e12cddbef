"""Layer-wise interpolation paths of one model: for every layer, theta_0 with only that layer
interpolated, over every alpha, on the layer-wise evaluation sets (prefix-cached); the main OOD
set also per part of its selection split."""

from workflow_job import load_caches, load_endpoints, main_ood_splits, start

start(snakemake)

from interpsharp.layerwise_interpolation import layerwise_interpolation
from interpsharp.tables import write_tsv

params = snakemake.params
model, path = load_endpoints(snakemake.input.zeroshot, snakemake.input.finetuned, params.device)
caches = load_caches(dict(zip(params.datasets, snakemake.input.caches)))
table = layerwise_interpolation(
    model, path, caches, params.alphas, model_name=snakemake.wildcards.model, batch_size=params.batch_size,
    device=params.device, precision=params.precision, splits=main_ood_splits(caches, params.main_ood, params.selection),
)
write_tsv(table, snakemake.output[0])
