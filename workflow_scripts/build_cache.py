"""Decode one evaluation set into a cache (images decoded once, memory-mapped later)."""

from workflow_job import start

start(snakemake, torch_threads=False)

from interpsharp.datasets import build_cache
from interpsharp.download import require_local_dataset

dataset = snakemake.wildcards.dataset
if snakemake.params.user_provided:
    require_local_dataset(snakemake.params.root, dataset, snakemake.params.layout)
build_cache(
    snakemake.params.layout,
    snakemake.params.root,
    snakemake.output[0],
    image_size=snakemake.params.image_size,
    limit=snakemake.params.limit,
    workers=snakemake.threads,
    name=dataset,
)
