"""Algorithm 1 for one model and the mask seeds of its job (one, or all: compute.path_jobs):
zero a Bernoulli mask of each straggler layer of theta_1, then evaluate the pruned model's
whole WiSE-FT path (the main OOD set also per part of its selection split, with its per-image
scores kept for the held-out gains). Checkpoints and caches are loaded once per job. A model
without stragglers has nothing pruned: its path's evaluation is copied, without torch."""

from workflow_job import files, load_caches, load_endpoints, main_ood_splits, start, use_job_threads

start(snakemake, torch_threads=False)

from interpsharp.stragglers import straggler_layers
from interpsharp.tables import read_tsv, write_tsv

params = snakemake.params
name = snakemake.wildcards.model
stragglers = read_tsv(snakemake.input.stragglers, required=["model", "criterion", "layer", "straggler"])
layers = straggler_layers(stragglers[stragglers["criterion"] == params.criterion], name)
outputs = list(zip(params.seeds, files(snakemake.output.tables), files(snakemake.output.scores)))


def write(table, scored_main, seed, table_file, scores_file, n_pruned_parameters=0, n_zeroed=0):
    write_tsv(table.assign(mask_seed=seed, criterion=params.criterion, n_pruned_layers=len(layers),
                           n_pruned_parameters=n_pruned_parameters, n_zeroed=n_zeroed, pruned_layers=",".join(layers)),
              table_file)
    scored_main.save(scores_file, dataset=params.main_ood, model=name, mask_seed=seed)


if not layers:
    from interpsharp.unpruned_path import unpruned_path

    print("no straggler layer: nothing pruned, every mask seed's path is the model's own WiSE-FT path; "
          "its evaluation is copied")
    table, scored_main = unpruned_path(files(snakemake.input.evaluation), files(snakemake.input.evaluation_scores),
                                       params.datasets)
    for seed, table_file, scores_file in outputs:
        write(table, scored_main, seed, table_file, scores_file)
else:
    use_job_threads(snakemake)
    from interpsharp.evaluate import path_table, score_path
    from interpsharp.interpolate import InterpolationPath
    from interpsharp.layers import layer_groups
    from interpsharp.pruning import prune_stragglers

    model, path = load_endpoints(snakemake.input.zeroshot, snakemake.input.finetuned, params.device)
    caches = load_caches(dict(zip(params.datasets, snakemake.input.caches)))
    splits = main_ood_splits(caches, params.main_ood, params.selection)
    for seed, table_file, scores_file in outputs:
        pruned, masks = prune_stragglers(path.theta_1, layer_groups(model), layers, seed, params.probability)
        print(f"mask seed {seed}:\n{masks.to_string()}")
        pruned_path = InterpolationPath(path.theta_0, pruned, device=params.device)
        scored = score_path(
            model, pruned_path, caches, params.alphas, model_name=name, batch_size=params.batch_size,
            device=params.device, precision=params.precision,
        )
        del pruned_path, pruned
        write(path_table(scored, name, splits), scored[params.main_ood], seed, table_file, scores_file,
              int(masks["numel"].sum()), int(masks["zeroed"].sum()))
