"""Adaptive average-case sharpness (Eq. 3) along the path: general (noise on every parameter,
all radii of the sweep in one job) and layer-wise (noise on one layer; every layer in one job,
where prefix caching pays off), one job per (model, alpha), or per model (compute.path_jobs).
On the main OOD set the fixed evaluation subset is drawn from the selection part."""


rule general_sharpness:
    input:
        zeroshot=zeroshot_checkpoint(),
        finetuned=finetuned_checkpoint,
        cache=cache_dir(GENERAL_SHARPNESS_DATASET),
    output:
        path_point_files("sharpness/general"),
    params:
        dataset=GENERAL_SHARPNESS_DATASET,
        main_ood=MAIN_OOD,
        selection=SELECTION,
        alphas=path_job_alphas,
        rhos=RHOS,
        n_iter=config["general_sharpness"]["n_iter"],
        n_samples=config["general_sharpness"]["n_samples"],
        batch_size=config["general_sharpness"]["batch_size"],
        precision=config["general_sharpness"]["precision"],
        seed=config["general_sharpness"]["seed"],
        device=config["compute"]["device"],
    log:
        log_path("general_sharpness", PATH_JOB),
    benchmark:
        benchmark_path("general_sharpness", PATH_JOB)
    threads: GPU_JOB_THREADS
    resources:
        **gpu_job("general_sharpness", POINTS_PER_PATH_JOB),
    group:
        "path_points"
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/general_sharpness.py"


rule layerwise_sharpness:
    input:
        zeroshot=zeroshot_checkpoint(),
        finetuned=finetuned_checkpoint,
        cache=cache_dir(LAYERWISE_SHARPNESS_DATASET),
    output:
        path_point_files("sharpness/layerwise"),
    params:
        dataset=LAYERWISE_SHARPNESS_DATASET,
        main_ood=MAIN_OOD,
        selection=SELECTION,
        alphas=path_job_alphas,
        mode=config["layerwise_sharpness"]["mode"],
        rho=config["layerwise_sharpness"]["rho"],
        n_iter=config["layerwise_sharpness"]["n_iter"],
        n_samples=config["layerwise_sharpness"]["n_samples"],
        batch_size=config["layerwise_sharpness"]["batch_size"],
        precision=config["layerwise_sharpness"]["precision"],
        seed=config["layerwise_sharpness"]["seed"],
        device=config["compute"]["device"],
    log:
        log_path("layerwise_sharpness", PATH_JOB),
    benchmark:
        benchmark_path("layerwise_sharpness", PATH_JOB)
    threads: GPU_JOB_THREADS
    resources:
        **gpu_job("layerwise_sharpness", POINTS_PER_PATH_JOB),
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/layerwise_sharpness.py"
