"""Algorithm 1 for one model and the mask seeds of its job (one, or all: compute.path_jobs):
zero a Bernoulli mask of each straggler layer of theta_1, then evaluate the pruned model's
whole WiSE-FT path (the main OOD set also per part of its selection split, with its per-image
scores kept for the held-out gains). Checkpoints and caches are loaded once per job."""

from workflow_job import files, load_caches, load_endpoints, main_ood_splits, start

start(snakemake)

from interpsharp.evaluate import path_table, score_path
from interpsharp.interpolate import InterpolationPath
from interpsharp.layers import layer_groups
from interpsharp.pruning import prune_stragglers
from interpsharp.stragglers import straggler_layers
from interpsharp.tables import read_tsv, write_tsv

params = snakemake.params
name = snakemake.wildcards.model
model, path = load_endpoints(snakemake.input.zeroshot, snakemake.input.finetuned, params.device)
stragglers = read_tsv(snakemake.input.stragglers, required=["model", "criterion", "layer", "straggler"])
layers = straggler_layers(stragglers[stragglers["criterion"] == params.criterion], name)
caches = load_caches(dict(zip(params.datasets, snakemake.input.caches)))
splits = main_ood_splits(caches, params.main_ood, params.selection)
if not layers:
    print("no straggler layer: nothing pruned, the pruned path is the original one (scored once for all mask seeds)")
unpruned = None
for seed, table_file, scores_file in zip(params.seeds, files(snakemake.output.tables), files(snakemake.output.scores)):
    pruned, masks = prune_stragglers(path.theta_1, layer_groups(model), layers, seed, params.probability)
    if layers:
        print(f"mask seed {seed}:\n{masks.to_string()}")
    if unpruned is not None:
        scored = unpruned  # without stragglers every seed's "pruned" theta_1 is theta_1 itself
    else:
        pruned_path = InterpolationPath(path.theta_0, pruned, device=params.device)
        scored = score_path(
            model, pruned_path, caches, params.alphas, model_name=name, batch_size=params.batch_size,
            device=params.device, precision=params.precision,
        )
        del pruned_path
        unpruned = None if layers else scored
    del pruned
    table = path_table(scored, name, splits).assign(
        mask_seed=seed, criterion=params.criterion, n_pruned_layers=len(layers),
        n_pruned_parameters=int(masks["numel"].sum()),
        n_zeroed=int(masks["zeroed"].sum()), pruned_layers=",".join(layers),
    )
    write_tsv(table, table_file)
    scored[params.main_ood].save(scores_file, dataset=params.main_ood, model=name, mask_seed=seed)
