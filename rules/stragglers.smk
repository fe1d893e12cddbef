"""Straggler layers by both criteria, per model, and their pruning (Algorithm 1): one job per
(model, mask seed) that evaluates the whole pruned path."""


rule detect_stragglers:
    input:
        zeroshot=zeroshot_checkpoint(),
        finetuned=finetuned_checkpoint,
        cache=cache_dir(LAYERWISE_SHARPNESS_DATASET),
        layerwise_paths=f"{RESULTS}/layerwise_interpolation/{{model}}.tsv",
    output:
        f"{RESULTS}/stragglers/{{model}}.tsv",
    params:
        dataset=LAYERWISE_SHARPNESS_DATASET,
        main_ood=MAIN_OOD,
        alpha=config["stragglers"]["alpha"],
        mode=config["layerwise_sharpness"]["mode"],
        rho=config["stragglers"]["rho"],
        n_iter=config["stragglers"]["n_iter"],
        eps=config["stragglers"]["eps"],
        eps_rel=config["stragglers"]["eps_rel"],
        n_samples=config["stragglers"]["n_samples"],
        seed=config["stragglers"]["seed"],
        delta=config["outcome"]["delta"],
        batch_size=config["layerwise_sharpness"]["batch_size"],
        precision=config["layerwise_sharpness"]["precision"],
        device=config["compute"]["device"],
        head_width=HEAD_WIDTH,
    log:
        log_path("detect_stragglers", "{model}"),
    benchmark:
        benchmark_path("detect_stragglers", "{model}")
    threads: GPU_JOB_THREADS
    resources:
        **gpu_job("stragglers"),
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/detect_stragglers.py"


rule prune_stragglers:
    input:
        zeroshot=zeroshot_checkpoint(),
        finetuned=finetuned_checkpoint,
        stragglers=f"{RESULTS}/stragglers/{{model}}.tsv",
        caches=cache_dirs(PRUNING_DATASETS),
    output:
        f"{RESULTS}/pruning/{{model}}/seed_{{seed}}.tsv",
    params:
        datasets=PRUNING_DATASETS,
        alphas=[float(a) for a in ALPHAS],
        criterion=config["pruning"]["criterion"],
        probability=config["pruning"]["probability"],
        seed=lambda wildcards: int(wildcards.seed),
        batch_size=config["evaluation"]["batch_size"],
        precision=config["evaluation"]["precision"],
        device=config["compute"]["device"],
        head_width=HEAD_WIDTH,
    log:
        log_path("prune_stragglers", "{model}/seed_{seed}"),
    benchmark:
        benchmark_path("prune_stragglers", "{model}/seed_{seed}")
    threads: GPU_JOB_THREADS
    resources:
        **gpu_job("pruning"),
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/prune_stragglers.py"
