"""Accuracy and loss along the WiSE-FT path: one job per (model, alpha) over every evaluation
set, so the path's 21 points spread over GPUs; then one tidy table and the path metrics."""


rule evaluate_interpolation:
    input:
        zeroshot=zeroshot_checkpoint(),
        finetuned=finetuned_checkpoint,
        caches=cache_dirs(DATASETS),
    output:
        f"{RESULTS}/evaluation/{{model}}/alpha_{{alpha}}.tsv",
    params:
        datasets=DATASETS,
        alpha=lambda wildcards: float(wildcards.alpha),
        batch_size=config["evaluation"]["batch_size"],
        precision=config["evaluation"]["precision"],
        device=config["compute"]["device"],
        head_width=HEAD_WIDTH,
    log:
        log_path("evaluate_interpolation", "{model}/alpha_{alpha}"),
    benchmark:
        benchmark_path("evaluate_interpolation", "{model}/alpha_{alpha}")
    threads: GPU_JOB_THREADS
    resources:
        **gpu_job("evaluate"),
    group:
        "path_points"
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/evaluate_interpolation.py"


rule path_metrics:
    input:
        f"{RESULTS}/tables/evaluation.tsv",
    output:
        report(
            f"{RESULTS}/tables/path_metrics.tsv",
            caption="../report/path_metrics.rst",
            category="Tables",
            labels={"table": "path metrics"},
        ),
    params:
        delta=config["outcome"]["delta"],
        xi=config["outcome"]["xi"],
        tolerance=config["outcome"]["tolerance"],
    log:
        log_path("path_metrics"),
    benchmark:
        benchmark_path("path_metrics")
    threads: 1
    resources:
        **cpu_job("summary"),
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/path_metrics.py"
