"""Layer-wise instability (Def. 1.1) of every (model, dataset, layer) path."""

from workflow_job import start

start(snakemake, torch_threads=False)

from interpsharp.metrics import layerwise_instability
from interpsharp.tables import read_tsv, write_tsv

write_tsv(layerwise_instability(read_tsv(snakemake.input[0])), snakemake.output[0])
