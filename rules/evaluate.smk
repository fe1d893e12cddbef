"""Accuracy and loss along the WiSE-FT path: one job per (model, alpha) over every evaluation
set, so the path's 21 points spread over GPUs (or one per model: compute.path_jobs); then one
tidy table and the path metrics. The main OOD set is also scored on its selection and held-out
parts, and its per-image scores are kept for the held-out gains' paired bootstrap."""


rule evaluate_interpolation:
    input:
        zeroshot=zeroshot_checkpoint(),
        finetuned=finetuned_checkpoint,
        caches=cache_dirs(DATASETS),
    output:
        tables=path_point_files("evaluation"),
        scores=path_point_files("per_image/evaluation", "npz"),
    params:
        datasets=DATASETS,
        main_ood=MAIN_OOD,
        selection=SELECTION,
        alphas=path_job_alphas,
        batch_size=config["evaluation"]["batch_size"],
        precision=config["evaluation"]["precision"],
        device=config["compute"]["device"],
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
        **THRESHOLDS,
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


rule heldout_gains:
    input:
        scores=expand(f"{RESULTS}/per_image/evaluation/{{model}}/alpha_{{alpha}}.npz", model=MODELS, alpha=ALPHAS),
        pruned_scores=expand(f"{RESULTS}/per_image/pruning/{{model}}/seed_{{seed}}.npz", model=MODELS, seed=MASK_SEEDS),
        cache=cache_dir(MAIN_OOD),
    output:
        report(
            f"{RESULTS}/tables/heldout_gains.tsv",
            caption="../report/heldout_gains.rst",
            category="Tables",
            labels={"table": "held-out gains"},
        ),
    params:
        main_ood=MAIN_OOD,
        selection=SELECTION,
        **THRESHOLDS,
        n_boot=config["statistics"]["n_boot"],
        confidence=config["statistics"]["confidence"],
        seed=config["statistics"]["seed"],
    log:
        log_path("heldout_gains"),
    benchmark:
        benchmark_path("heldout_gains")
    threads: 1
    resources:
        **cpu_job("summary"),
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/heldout_gains.py"
