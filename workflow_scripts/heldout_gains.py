"""alpha* chosen on the selection part of the main OOD set, gains scored on its held-out part
with paired bootstrap intervals: every original path and every pruned path."""

from workflow_job import selection_split, start

start(snakemake, torch_threads=False)

from collections import defaultdict
from pathlib import Path

from interpsharp.data import load_cache
from interpsharp.heldout import heldout_gains
from interpsharp.metrics import OutcomeThresholds
from interpsharp.scores import ScoredPath
from interpsharp.tables import write_tsv

params = snakemake.params
split = selection_split(load_cache(snakemake.input.cache), params.selection)
per_model = defaultdict(list)
for file in snakemake.input.scores:  # .../per_image/evaluation/<model>/alpha_<a>.npz
    per_model[Path(file).parent.name].append(ScoredPath.load(file))
paths = [({"model": model, "dataset": params.main_ood, "path": "original", "mask_seed": None}, ScoredPath.stack(parts))
         for model, parts in per_model.items()]
for file in snakemake.input.pruned_scores:  # .../per_image/pruning/<model>/seed_<s>.npz
    seed = int(Path(file).stem.removeprefix("seed_"))
    paths.append(({"model": Path(file).parent.name, "dataset": params.main_ood, "path": "pruned", "mask_seed": seed},
                  ScoredPath.load(file)))
thresholds = OutcomeThresholds(delta=params.delta, xi=params.xi, tolerance=params.tolerance)
table = heldout_gains(paths, split, thresholds, n_boot=params.n_boot, seed=params.seed, confidence=params.confidence)
write_tsv(table, snakemake.output[0])
print(table.to_string())
