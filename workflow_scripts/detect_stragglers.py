"""Straggler layers of one model by both criteria, chosen on the selection part of the main OOD
set, one row per (criterion, layer):

- by sharpness: layer-wise sharpness at ``alpha`` (few draws, as the paper's 5) is ~0 and
  consistent with 0 within ``k`` standard errors (undecidable layers flagged as such). When the
  workflow passes the sweep's point at ``alpha`` (``input.sweep``: same radius, draws, subset
  and seed), its rows are those values, bit for bit, and are read instead of drawn again;
- by interpolation: layer-wise instability (Def. 1.1, the configured reference loss) exceeds
  delta (Def. 1.2).
"""

from workflow_job import load_endpoints, sharpness_inputs, start

reuse_sweep = bool(snakemake.input.sweep)
start(snakemake, torch_threads=not reuse_sweep)

import pandas as pd

from interpsharp.metrics import (
    DEGENERATE_INTERPOLATION,
    degenerate_interpolation_paths,
    layerwise_instability,
    loss_path_metrics,
    stragglers_by_interpolation,
)
from interpsharp.stragglers import stragglers_by_sharpness
from interpsharp.subsets import SELECTION
from interpsharp.tables import read_tsv, write_tsv

params = snakemake.params
name = snakemake.wildcards.model


def sharpness_at_alpha() -> pd.DataFrame:
    """Layer-wise sharpness of every layer at ``params.alpha``: the sweep's rows, or drawn here."""
    if reuse_sweep:
        print(f"layer-wise sharpness at alpha = {params.alpha}: the sweep's rows ({snakemake.input.sweep}), same draws")
        sweep = read_tsv(snakemake.input.sweep, required=["model", "alpha", "layer", "rho", "value"])
        rows = sweep[(sweep["alpha"] == params.alpha) & (sweep["rho"] == params.rho)]
        if rows.empty:
            raise ValueError(f"{snakemake.input.sweep}: no rows at alpha {params.alpha}, rho {params.rho}; rerun the sweep")
        return rows.reset_index(drop=True)
    from interpsharp.sharpness import layerwise_sharpness

    model, path = load_endpoints(snakemake.input.zeroshot, snakemake.input.finetuned, params.device)
    images, labels, scoring = sharpness_inputs(
        snakemake.input.cache, params.n_samples, params.seed, params.device, params.main_ood, params.selection,
        model.preprocess,
    )
    return layerwise_sharpness(
        model, path, [params.alpha], images, labels, [params.rho], params.n_iter, params.seed, mode=params.mode,
        **scoring, batch_size=params.batch_size, precision=params.precision,
        model_name=name, dataset=params.dataset,
    )


sharpness = sharpness_at_alpha()
by_sharpness = stragglers_by_sharpness(sharpness, params.eps, params.eps_rel, alpha=params.alpha, k=params.k).assign(
    criterion="sharpness", split=SELECTION if params.dataset == params.main_ood else "all", n_iter=params.n_iter,
    seed=params.seed,
)


def on_selection(table: pd.DataFrame) -> pd.DataFrame:
    return table[(table["dataset"] == params.main_ood) & (table["split"] == SELECTION)]


paths = on_selection(read_tsv(snakemake.input.layerwise_paths))
endpoints = loss_path_metrics(on_selection(pd.concat([read_tsv(f) for f in snakemake.input.endpoints])), params.delta)
instability = layerwise_instability(paths, params.reference, endpoints)
flagged = set(stragglers_by_interpolation(paths, params.delta, params.reference, endpoints)["layer"])
degenerate = degenerate_interpolation_paths(instability, params.delta)
by_interpolation = instability.rename(columns={"instability": "value"}).assign(
    criterion="interpolation", threshold=params.delta, straggler=instability["layer"].isin(flagged),
    degenerate=degenerate, note=degenerate.map({True: DEGENERATE_INTERPOLATION, False: ""}),
)

columns = ["model", "dataset", "split", "criterion", "reference", "layer", "value", "stderr", "n_nonfinite", "threshold",
           "straggler", "undecidable", "degenerate", "note", "alpha", "rho", "n_iter", "seed", "eps", "eps_rel", "k"]
table = pd.concat([by_sharpness, by_interpolation], ignore_index=True).reindex(columns=columns)
write_tsv(table, snakemake.output[0])
print(table[table["straggler"].astype(bool)].to_string())
