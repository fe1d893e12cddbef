"""Layer-wise instability (Def. 1.1) of every (model, dataset, split, layer) path, under both
readings of its reference loss: the original models' mean loss (the paper's text) and the
layer-wise path's own endpoints."""

from workflow_job import start

start(snakemake, torch_threads=False)

import pandas as pd

from interpsharp.metrics import REFERENCES, layerwise_instability
from interpsharp.tables import read_tsv, write_tsv

layerwise = read_tsv(snakemake.input.layerwise)
endpoints = read_tsv(snakemake.input.path_metrics)
table = pd.concat([layerwise_instability(layerwise, reference, endpoints) for reference in REFERENCES], ignore_index=True)
write_tsv(table, snakemake.output[0])
