"""One fine-tune of the demo sweep: recipe i of the config with the seed derived for entry i."""

from workflow_job import start

start(snakemake)

from interpsharp.demo.finetune import FinetuneHparams
from interpsharp.demo.seeds import derive_seed
from interpsharp.demo.world import finetune

index = snakemake.params.index
finetune(
    snakemake.input.zeroshot,
    snakemake.input.train,
    snakemake.output.checkpoint,
    FinetuneHparams(**snakemake.params.recipe),
    seed=derive_seed(snakemake.params.seed, f"finetune/{index}"),
    threads=snakemake.threads,
    progress=True,
)
