"""Figures 1-5 of the paper (PNG for the report, PDF for print), drawn by interpsharp.plots
from the tidy tables; each is registered for `snakemake --report` with its caption."""

rule plot_interpolation_paths:
    input:
        evaluation=f"{RESULTS}/tables/evaluation.tsv",
        path_metrics=f"{RESULTS}/tables/path_metrics.tsv",
    output:
        **figure_outputs("fig1_interpolation"),
    params:
        **FIGURE_COMMON,
        figure="fig1_interpolation",
    log:
        log_path("plot_interpolation_paths"),
    benchmark:
        benchmark_path("plot_interpolation_paths")
    threads: 1
    resources:
        **cpu_job("summary"),
    group:
        "figures"
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/plot_figure.py"


rule plot_layerwise_interpolation:
    input:
        layerwise_interpolation=f"{RESULTS}/tables/layerwise_interpolation.tsv",
        path_metrics=f"{RESULTS}/tables/path_metrics.tsv",
        stragglers=f"{RESULTS}/tables/stragglers.tsv",
    output:
        **figure_outputs("fig2_layerwise_interpolation"),
    params:
        **FIGURE_COMMON,
        figure="fig2_layerwise_interpolation",
    log:
        log_path("plot_layerwise_interpolation"),
    benchmark:
        benchmark_path("plot_layerwise_interpolation")
    threads: 1
    resources:
        **cpu_job("summary"),
    group:
        "figures"
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/plot_figure.py"


rule plot_general_sharpness:
    input:
        general_sharpness=f"{RESULTS}/tables/general_sharpness.tsv",
        path_metrics=f"{RESULTS}/tables/path_metrics.tsv",
    output:
        **figure_outputs("fig3_general_sharpness"),
    params:
        **FIGURE_COMMON,
        figure="fig3_general_sharpness",
        rho=float(config["general_sharpness"]["rho"]),
    log:
        log_path("plot_general_sharpness"),
    benchmark:
        benchmark_path("plot_general_sharpness")
    threads: 1
    resources:
        **cpu_job("summary"),
    group:
        "figures"
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/plot_figure.py"


rule plot_layerwise_sharpness:
    input:
        layerwise_sharpness=f"{RESULTS}/tables/layerwise_sharpness.tsv",
        path_metrics=f"{RESULTS}/tables/path_metrics.tsv",
        stragglers=f"{RESULTS}/tables/stragglers.tsv",
    output:
        **figure_outputs("fig4_layerwise_sharpness"),
    params:
        **FIGURE_COMMON,
        figure="fig4_layerwise_sharpness",
    log:
        log_path("plot_layerwise_sharpness"),
    benchmark:
        benchmark_path("plot_layerwise_sharpness")
    threads: 1
    resources:
        **cpu_job("summary"),
    group:
        "figures"
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/plot_figure.py"


rule plot_pruning:
    input:
        pruning=f"{RESULTS}/tables/pruning.tsv",
        evaluation=f"{RESULTS}/tables/evaluation.tsv",
        path_metrics=f"{RESULTS}/tables/path_metrics.tsv",
    output:
        **figure_outputs("fig5_pruning"),
    params:
        **FIGURE_COMMON,
        figure="fig5_pruning",
    log:
        log_path("plot_pruning"),
    benchmark:
        benchmark_path("plot_pruning")
    threads: 1
    resources:
        **cpu_job("summary"),
    group:
        "figures"
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/plot_figure.py"
