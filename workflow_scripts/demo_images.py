"""One demo image set (an evaluation style, or the photo fine-tuning split) as a cache.

Draws images with numpy and PIL only: these jobs run before pretraining, on the demo's critical
path, and importing torch and open_clip would cost each of them about five seconds."""

from pathlib import Path

from workflow_job import start

start(snakemake, torch_threads=False)

from interpsharp.demo.seeds import write_image_set

out = Path(snakemake.output[0])
params = snakemake.params
write_image_set(out, out.name, params.n_images, params.seed, params.image_size, progress=True)
