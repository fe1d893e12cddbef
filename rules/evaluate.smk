"""Accuracy and loss along the WiSE-FT path: one job per (model, alpha) over every evaluation
set, so the path's 21 points spread over GPUs (or one per model: compute.path_jobs); then one
tidy table and the path metrics."""


rule evaluate_interpolation:
    input:
        zeroshot=zeroshot_checkpoint(),
        finetuned=finetuned_checkpoint,
        caches=cache_dirs(DATASETS),
    output:
        path_point_files("evaluation"),
    params:
        datasets=DATASETS,
        alphas=path_job_alphas,
        batch_size=config["evaluation"]["batch_size"],
        precision=config["evaluation"]["precision"],
        device=config["compute"]["device"],
        head_width=HEAD_WIDTH,
    log:
        log_path("evaluate_interpolation", PATH_JOB),
    benchmark:
        benchmark_path("evaluate_interpolation", PATH_JOB)
    threads: GPU_JOB_THREADS
    resources:
        **gpu_job("evaluate", POINTS_PER_PATH_JOB),
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
