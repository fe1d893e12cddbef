"""Compare the paths' endpoints with the published numbers (paper world); in the demo world
nothing is published, and the table says so for every (model, set)."""

from workflow_job import start

start(snakemake, torch_threads=False)

from interpsharp.reproduction import Tolerances, reproduction_check, shipped_published, zeroshot_entry
from interpsharp.tables import read_tsv, write_tsv

params = snakemake.params
check = reproduction_check(
    read_tsv(snakemake.input.evaluation, required=["model", "dataset", "alpha", "metric", "value", "n"]),
    datasets=params.datasets,
    models=params.models,
    zeroshot=zeroshot_entry(params.zeroshot_model, params.zeroshot_pretrained),
    tolerances=Tolerances(params.zeroshot_tolerance_points, params.finetuned_tolerance_points),
    published=shipped_published() if params.world == "paper" else None,
    precision=params.precision,
)
write_tsv(check, snakemake.output[0])
print(check["status"].value_counts().to_string())
