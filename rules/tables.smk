"""Aggregation and statistics: per-job tables concatenated into one tidy table per kind, the
pruned paths' metrics, the per-model summary (SPEC's table) and the straggler overlap under
both Def. 1.1 readings, the rank correlations between each measure and the OOD gain, and what
they say about each of the paper's claims."""

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
        **THRESHOLDS,
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
        pruning=f"{RESULTS}/tables/pruning.tsv",
        pruning_metrics=f"{RESULTS}/tables/pruning_metrics.tsv",
        heldout_gains=f"{RESULTS}/tables/heldout_gains.tsv",
    output:
        summary=report(
            f"{RESULTS}/tables/summary.tsv",
            caption="../report/summary.rst",
            category="Tables",
            labels={"table": "per-model summary"},
        ),
        overlap=report(
            f"{RESULTS}/tables/straggler_overlap.tsv",
            caption="../report/straggler_overlap.rst",
            category="Tables",
            labels={"table": "straggler overlap"},
        ),
    params:
        main_ood=MAIN_OOD,
        rho=float(config["general_sharpness"]["rho"]),
        mode=config["layerwise_sharpness"]["mode"],
        eps=config["stragglers"]["eps"],
        eps_rel=config["stragglers"]["eps_rel"],
        k=config["stragglers"]["k"],
        delta=config["outcome"]["delta"],
        reference=config["layerwise_interpolation"]["reference"],
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
        correlations=report(
            f"{RESULTS}/tables/correlations.tsv",
            caption="../report/correlations.rst",
            category="Tables",
            labels={"table": "rank correlations"},
        ),
        claims=report(
            f"{RESULTS}/tables/claims.tsv",
            caption="../report/claims.rst",
            category="Tables",
            labels={"table": "the paper's claims"},
        ),
    params:
        rho_sweep=[float(r) for r in config["general_sharpness"]["rho_sweep"]],
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
