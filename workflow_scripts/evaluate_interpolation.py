"""Accuracy and loss of theta(alpha) on every evaluation set, for the alphas of one path job;
the main OOD set also per part of its selection split, and its per-image scores kept."""

from workflow_job import files, load_caches, load_endpoints, main_ood_splits, start, write_per_alpha

start(snakemake)

from interpsharp.evaluate import path_table, score_path

params = snakemake.params
model, path = load_endpoints(snakemake.input.zeroshot, snakemake.input.finetuned, params.device)
caches = load_caches(dict(zip(params.datasets, snakemake.input.caches)))
scored = score_path(
    model, path, caches, params.alphas, model_name=snakemake.wildcards.model, batch_size=params.batch_size,
    device=params.device, precision=params.precision,
)
table = path_table(scored, snakemake.wildcards.model, main_ood_splits(caches, params.main_ood, params.selection))
write_per_alpha(table, params.alphas, files(snakemake.output.tables))
main = scored[params.main_ood]
for i, output in enumerate(files(snakemake.output.scores)):
    main.take([i]).save(output, dataset=params.main_ood, model=snakemake.wildcards.model)
