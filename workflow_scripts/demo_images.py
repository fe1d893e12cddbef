"""One demo image set (an evaluation style, or the photo fine-tuning split) as a cache.

Draws images with numpy and PIL only: these jobs run before pretraining, on the demo's critical
path, and importing torch and open_clip would cost each of them about five seconds."""

from pathlib import Path

from workflow_job import start

start(snakemake, torch_threads=False)

from interpsharp.demo.images import write_style_cache
from interpsharp.demo.seeds import derive_seed, image_set_purpose, image_set_style

out = Path(snakemake.output[0])
params = snakemake.params
write_style_cache(out, image_set_style(out.name), params.n_images, derive_seed(params.seed, image_set_purpose(out.name)),
                  params.image_size, name=out.name, progress=True)
