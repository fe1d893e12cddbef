"""The ID set's class names: the classes of the zero-shot head, which every evaluation set's
classes are checked against."""

from workflow_job import start

start(snakemake, torch_threads=False)

from interpsharp.class_maps import write_head_classes
from interpsharp.datasets import ClassSource, layout_classes

params = snakemake.params
classnames = layout_classes(params.layout, params.root, ClassSource(classnames=params.classnames))
write_head_classes(snakemake.output[0], classnames, params.dataset)
print(f"{params.dataset}: {len(classnames)} classes: {', '.join(classnames[:10])}{' ...' if len(classnames) > 10 else ''}")
