"""Algorithm 1 for one (model, mask seed): zero a Bernoulli mask of each straggler layer of
theta_1, then evaluate the pruned model's whole WiSE-FT path."""

from workflow_job import load_caches, load_endpoints, start

start(snakemake)

from interpsharp.evaluate import evaluate_path
from interpsharp.interpolate import InterpolationPath
from interpsharp.layers import layer_groups
from interpsharp.stragglers import prune_stragglers, straggler_layers
from interpsharp.tables import read_tsv, write_tsv

params = snakemake.params
name = snakemake.wildcards.model
model, path = load_endpoints(snakemake.input.zeroshot, snakemake.input.finetuned, params.device, params.head_width)
stragglers = read_tsv(snakemake.input.stragglers, required=["model", "criterion", "layer", "straggler"])
layers = straggler_layers(stragglers[stragglers["criterion"] == params.criterion], name)
pruned, masks = prune_stragglers(path.theta_1, layer_groups(model), layers, params.seed, params.probability)
print(masks.to_string())
pruned_path = InterpolationPath(path.theta_0, pruned, device=params.device)
del path
caches = load_caches(dict(zip(params.datasets, snakemake.input.caches)))
table = evaluate_path(
    model, pruned_path, caches, params.alphas, model_name=name, batch_size=params.batch_size,
    device=params.device, precision=params.precision,
)
table = table.assign(
    mask_seed=params.seed, criterion=params.criterion, n_pruned_layers=len(layers), pruned_layers=",".join(layers),
)
write_tsv(table, snakemake.output[0])
