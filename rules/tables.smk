"""Aggregation and statistics: per-job tables concatenated into one tidy table per kind, the
pruned paths' metrics, the per-model summary (SPEC's table) and the rank correlations between
sharpness and OOD gain (the paper's claims, as numbers)."""

rule collect_table:
    input:
        lambda wildcards: COLLECTED[wildcards.table],
    output:
        f"{RESULTS}/tables/{{table}}.tsv",
    wildcard_constraints:
        table=regex_alternatives(COLLECTED),
    log:
        log_path("collect_table", "{table}"),
    benchmark:
        benchmark_path("collect_table", "{table}")
    threads: 1
    resources:
        **cpu_job("summary"),
    group:
        "tables"
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/collect_table.py"


rule pruning_metrics:
    input:
        pruning=f"{RESULTS}/tables/pruning.tsv",
    output:
        report(
            f"{RESULTS}/tables/pruning_metrics.tsv",
            caption="../report/pruning_metrics.rst",
            category="Tables",
            labels={"table": "pruned path metrics"},
        ),
    params:
        delta=config["outcome"]["delta"],
        xi=config["outcome"]["xi"],
        tolerance=config["outcome"]["tolerance"],
    log:
        log_path("pruning_metrics"),
    benchmark:
        benchmark_path("pruning_metrics")
    threads: 1
    resources:
        **cpu_job("summary"),
    group:
        "tables"
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/path_metrics.py"


rule summarize_models:
    input:
        path_metrics=f"{RESULTS}/tables/path_metrics.tsv",
        general_sharpness=f"{RESULTS}/tables/general_sharpness.tsv",
        layerwise_sharpness=f"{RESULTS}/tables/layerwise_sharpness.tsv",
        layerwise_instability=f"{RESULTS}/tables/layerwise_instability.tsv",
        stragglers=f"{RESULTS}/tables/stragglers.tsv",
        pruning_metrics=f"{RESULTS}/tables/pruning_metrics.tsv",
    output:
        report(
            f"{RESULTS}/tables/summary.tsv",
            caption="../report/summary.rst",
            category="Tables",
            labels={"table": "per-model summary"},
        ),
    params:
        main_ood=MAIN_OOD,
        rho=float(config["general_sharpness"]["rho"]),
    log:
        log_path("summarize_models"),
    benchmark:
        benchmark_path("summarize_models")
    threads: 1
    resources:
        **cpu_job("summary"),
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/summarize_models.py"


rule correlate_sharpness:
    input:
        f"{RESULTS}/tables/summary.tsv",
    output:
        report(
            f"{RESULTS}/tables/correlations.tsv",
            caption="../report/correlations.rst",
            category="Tables",
            labels={"table": "rank correlations"},
        ),
    params:
        n_boot=config["statistics"]["n_boot"],
        confidence=config["statistics"]["confidence"],
        seed=config["statistics"]["seed"],
    log:
        log_path("correlate_sharpness"),
    benchmark:
        benchmark_path("correlate_sharpness")
    threads: 1
    resources:
        **cpu_job("summary"),
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/correlate_sharpness.py"
