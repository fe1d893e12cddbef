"""Pretrain the demo world's tiny CLIP contrastively on captioned shape images."""

from workflow_job import start

start(snakemake)

from interpsharp.demo.pretrain import PretrainConfig
from interpsharp.demo.world import WorldConfig, pretrain

settings = dict(snakemake.params.pretrain, image_size=snakemake.params.image_size)
world = WorldConfig(seed=snakemake.params.seed, image_size=snakemake.params.image_size,
                    pretrain=PretrainConfig(**settings))
pretrain(snakemake.output.clip, world, snakemake.threads, progress=True)
