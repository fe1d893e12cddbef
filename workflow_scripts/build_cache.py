"""Decode one evaluation set into a cache (images decoded once, memory-mapped later), its
classes related to the ID set's."""

from workflow_job import start

start(snakemake, torch_threads=False)

from interpsharp.class_maps import read_head_classes
from interpsharp.datasets import ClassSource, build_cache
from interpsharp.download import require_local_dataset

dataset = snakemake.wildcards.dataset
params = snakemake.params
if params.user_provided:
    require_local_dataset(params.root, dataset, params.layout)
build_cache(
    params.layout,
    params.root,
    snakemake.output[0],
    image_size=params.image_size,
    limit=params.limit,
    workers=snakemake.threads,
    name=dataset,
    head_classnames=read_head_classes(snakemake.input.id_classes),
    classes=ClassSource(classnames=params.classnames, subset=params.subset, mapping=params.class_mapping),
)
