"""Algorithm 1 for one (model, mask seed): zero a Bernoulli mask of each straggler layer of
theta_1, then evaluate the pruned model's whole WiSE-FT path (the main OOD set also per part
of its selection split, with its per-image scores kept for the held-out gains)."""

from workflow_job import load_caches, load_endpoints, main_ood_splits, start

start(snakemake)

from interpsharp.evaluate import path_table, score_path
from interpsharp.interpolate import InterpolationPath
from interpsharp.layers import layer_groups
from interpsharp.stragglers import prune_stragglers, straggler_layers
from interpsharp.tables import read_tsv, write_tsv

params = snakemake.params
name = snakemake.wildcards.model
model, path = load_endpoints(snakemake.input.zeroshot, snakemake.input.finetuned, params.device)
stragglers = read_tsv(snakemake.input.stragglers, required=["model", "criterion", "layer", "straggler"])
layers = straggler_layers(stragglers[stragglers["criterion"] == params.criterion], name)
pruned, masks = prune_stragglers(path.theta_1, layer_groups(model), layers, params.seed, params.probability)
print(masks.to_string() if layers else "no straggler layer: nothing pruned, the pruned path is the original one")
pruned_path = InterpolationPath(path.theta_0, pruned, device=params.device)
del path
caches = load_caches(dict(zip(params.datasets, snakemake.input.caches)))
scored = score_path(
    model, pruned_path, caches, params.alphas, model_name=name, batch_size=params.batch_size,
    device=params.device, precision=params.precision,
)
table = path_table(scored, name, main_ood_splits(caches, params.main_ood, params.selection)).assign(
    mask_seed=params.seed, criterion=params.criterion, n_pruned_layers=len(layers),
    n_pruned_parameters=int(masks["numel"].sum()),
    n_zeroed=int(masks["zeroed"].sum()), pruned_layers=",".join(layers),
)
write_tsv(table, snakemake.output.table)
scored[params.main_ood].save(snakemake.output.scores, dataset=params.main_ood, model=name, mask_seed=params.seed)
