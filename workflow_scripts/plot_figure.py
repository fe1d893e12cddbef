"""Draw one of Figures 1-5 (params.figure says which) and save it as PNG and PDF."""

from workflow_job import start

start(snakemake, torch_threads=False)

from interpsharp import plots
from interpsharp.tables import read_tsv

tables = {name: read_tsv(path) for name, path in snakemake.input.items()}
params = snakemake.params
metrics, dataset = tables["path_metrics"], params.main_ood
draw = {
    "fig1_interpolation": lambda: plots.plot_interpolation_paths(tables["evaluation"], metrics, dataset),
    "fig2_layerwise_interpolation": lambda: plots.plot_layerwise_interpolation(
        tables["layerwise_interpolation"], metrics, dataset, tables["stragglers"]),
    "fig3_general_sharpness": lambda: plots.plot_general_sharpness(
        tables["general_sharpness"], metrics, dataset, params.rho),
    "fig4_layerwise_sharpness": lambda: plots.plot_layerwise_sharpness(
        tables["layerwise_sharpness"], metrics, dataset, tables["stragglers"]),
    "fig5_pruning": lambda: plots.plot_pruning(tables["pruning"], tables["evaluation"], metrics, dataset),
}[params.figure]
plots.save_figure(draw(), [snakemake.output.png, snakemake.output.pdf], dpi=params.dpi)
