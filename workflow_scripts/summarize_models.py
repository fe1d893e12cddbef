"""SPEC's per-model table on the main OOD set and the straggler overlap table (both Def. 1.1
readings). Assembly only (interpsharp.summary): every number comes from an earlier table."""

from workflow_job import start

start(snakemake, torch_threads=False)

from interpsharp.summary import SummarySettings, model_summary, straggler_sets
from interpsharp.tables import read_tsv, write_tsv

params = snakemake.params
tables = {name: read_tsv(path) for name, path in snakemake.input.items()}
settings = SummarySettings(
    main_ood=params.main_ood, rho=params.rho, mode=params.mode, eps=params.eps, eps_rel=params.eps_rel, k=params.k,
    delta=params.delta, reference=params.reference,
)
summary = model_summary(
    tables["path_metrics"], tables["heldout_gains"], tables["general_sharpness"], tables["layerwise_sharpness"],
    tables["layerwise_instability"], tables["stragglers"], tables["pruning"], tables["pruning_metrics"], settings,
)
write_tsv(summary, snakemake.output.summary)
write_tsv(straggler_sets(tables["layerwise_instability"], tables["stragglers"], settings, tables["path_metrics"]),
          snakemake.output.overlap)
