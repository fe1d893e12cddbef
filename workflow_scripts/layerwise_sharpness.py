"""Layer-wise adaptive average-case sharpness of every layer, for the alphas of one path job."""

from workflow_job import load_endpoints, sharpness_inputs, start, write_per_alpha

start(snakemake)

from interpsharp.sharpness import layerwise_sharpness

params = snakemake.params
model, path = load_endpoints(snakemake.input.zeroshot, snakemake.input.finetuned, params.device)
images, labels, scoring = sharpness_inputs(
    snakemake.input.cache, params.n_samples, params.seed, params.device, params.main_ood, params.selection, model.preprocess
)
table = layerwise_sharpness(
    model, path, params.alphas, images, labels, [params.rho], params.n_iter, params.seed, mode=params.mode,
    **scoring, batch_size=params.batch_size, precision=params.precision,
    model_name=snakemake.wildcards.model, dataset=params.dataset,
)
write_per_alpha(table, snakemake.params.alphas, list(snakemake.output))
