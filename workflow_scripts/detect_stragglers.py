"""Straggler layers of one model by both criteria, one row per (criterion, layer):

- by sharpness: layer-wise sharpness at ``alpha`` (few draws, as the paper's 5) is ~0;
- by interpolation: layer-wise instability on the main OOD set exceeds delta (Def. 1.2).
"""

from workflow_job import load_endpoints, sharpness_inputs, start

start(snakemake)

import pandas as pd

from interpsharp.metrics import layerwise_instability, stragglers_by_interpolation
from interpsharp.sharpness import layerwise_sharpness
from interpsharp.stragglers import straggler_layers, stragglers_by_sharpness
from interpsharp.tables import read_tsv, write_tsv

params = snakemake.params
name = snakemake.wildcards.model
model, path = load_endpoints(snakemake.input.zeroshot, snakemake.input.finetuned, params.device, params.head_width)
images, labels, class_subset = sharpness_inputs(snakemake.input.cache, params.n_samples, params.seed, params.device)
sharpness = layerwise_sharpness(
    model, path, [params.alpha], images, labels, [params.rho], params.n_iter, params.seed, mode=params.mode,
    class_subset=class_subset, batch_size=params.batch_size, precision=params.precision,
    model_name=name, dataset=params.dataset,
)
by_sharpness = stragglers_by_sharpness(sharpness, params.eps, params.eps_rel, alpha=params.alpha).assign(
    criterion="sharpness", n_iter=params.n_iter, seed=params.seed,
)

paths = read_tsv(snakemake.input.layerwise_paths)
paths = paths[paths["dataset"] == params.main_ood]
instability = layerwise_instability(paths)
flagged = straggler_layers(stragglers_by_interpolation(paths, params.delta)) if len(paths) else []
by_interpolation = instability.rename(columns={"instability": "value"}).assign(
    criterion="interpolation", threshold=params.delta, straggler=lambda t: t["layer"].isin(flagged),
)

columns = ["model", "dataset", "criterion", "layer", "value", "threshold", "straggler",
           "alpha", "rho", "n_iter", "seed", "eps", "eps_rel"]
table = pd.concat([by_sharpness, by_interpolation], ignore_index=True).reindex(columns=columns)
write_tsv(table, snakemake.output[0])
print(table[table["straggler"]].to_string())
