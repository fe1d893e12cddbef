"""Layer-wise interpolation paths of one model: for every layer, theta_0 with only that layer
interpolated, over every alpha, on the layer-wise evaluation sets."""

from workflow_job import load_caches, load_endpoints, start

start(snakemake)

import pandas as pd
from tqdm import tqdm

from interpsharp.evaluate import evaluate_path
from interpsharp.layers import layer_groups
from interpsharp.tables import write_tsv

model, path = load_endpoints(
    snakemake.input.zeroshot, snakemake.input.finetuned, snakemake.params.device, snakemake.params.head_width
)
caches = load_caches(dict(zip(snakemake.params.datasets, snakemake.input.caches)))
tables = []
for layer, names in tqdm(layer_groups(model).items(), desc=f"layers {snakemake.wildcards.model}", unit="layer"):
    table = evaluate_path(
        model, path, caches, snakemake.params.alphas, only=names, model_name=snakemake.wildcards.model,
        batch_size=snakemake.params.batch_size, device=snakemake.params.device,
        precision=snakemake.params.precision, progress=False,
    )
    tables.append(table.assign(layer=layer))
write_tsv(pd.concat(tables, ignore_index=True), snakemake.output[0])
