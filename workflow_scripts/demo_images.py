"""One demo image set (an evaluation style, or the photo fine-tuning split) as a cache."""

from pathlib import Path

from workflow_job import start

start(snakemake, torch_threads=False)

from interpsharp.demo.world import WorldConfig, write_images

out = Path(snakemake.output[0])
n = snakemake.params.n_images
world = WorldConfig(seed=snakemake.params.seed, image_size=snakemake.params.image_size, eval_images=n, train_images=n)
write_images(out.parent, world, names=[out.name], progress=True)
