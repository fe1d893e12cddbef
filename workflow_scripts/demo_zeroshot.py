"""theta_0 of the demo world: the tiny CLIP's image tower plus its zero-shot head."""

from workflow_job import start

start(snakemake)

from interpsharp.demo.world import build_zeroshot

build_zeroshot(snakemake.input.clip, snakemake.output.checkpoint, snakemake.threads)
