"""Straggler layers by both criteria, per model, chosen on the selection part of the main OOD
set, and their pruning (Algorithm 1): one job per (model, mask seed), or per model
(compute.path_jobs), that evaluates the whole pruned path (the main OOD set also per part, with
per-image scores for the held-out gains); a model without stragglers has its path's
evaluation copied instead."""


rule detect_stragglers:
    input:
        zeroshot=zeroshot_checkpoint(),
        finetuned=finetuned_checkpoint,
        cache=cache_dir(LAYERWISE_SHARPNESS_DATASET),
        # The sweep's point at stragglers.alpha when its draws are detection's ([] otherwise).
        sweep=straggler_sweep_point(),
        layerwise_paths=f"{RESULTS}/layerwise_interpolation/{{model}}.tsv",
        # The whole path's endpoints: Def. 1.1's reference is the original models' mean loss.
        endpoints=[f"{RESULTS}/evaluation/{{model}}/alpha_{ALPHAS[0]}.tsv", f"{RESULTS}/evaluation/{{model}}/alpha_{ALPHAS[-1]}.tsv"],
    output:
        f"{RESULTS}/stragglers/{{model}}.tsv",
    params:
        dataset=LAYERWISE_SHARPNESS_DATASET,
        main_ood=MAIN_OOD,
        selection=SELECTION,
        reference=config["layerwise_interpolation"]["reference"],
        alpha=config["stragglers"]["alpha"],
        mode=config["layerwise_sharpness"]["mode"],
        rho=config["stragglers"]["rho"],
        n_iter=config["stragglers"]["n_iter"],
        eps=config["stragglers"]["eps"],
        eps_rel=config["stragglers"]["eps_rel"],
        k=config["stragglers"]["k"],
        n_samples=config["stragglers"]["n_samples"],
        seed=config["stragglers"]["seed"],
        delta=config["outcome"]["delta"],
        batch_size=config["layerwise_sharpness"]["batch_size"],
        precision=config["layerwise_sharpness"]["precision"],
        device=config["compute"]["device"],
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
        # The model's WiSE-FT path as evaluated: without a straggler the pruned path is that
        # path, and the job copies its rows and per-image scores instead of scoring it again.
        evaluation=expand(f"{RESULTS}/evaluation/{{model}}/alpha_{{alpha}}.tsv", alpha=ALPHAS, allow_missing=True),
        evaluation_scores=expand(f"{RESULTS}/per_image/evaluation/{{model}}/alpha_{{alpha}}.npz", alpha=ALPHAS,
                                 allow_missing=True),
    output:
        tables=prune_job_files("pruning", "tsv"),
        scores=prune_job_files("per_image/pruning", "npz"),
    params:
        datasets=PRUNING_DATASETS,
        main_ood=MAIN_OOD,
        selection=SELECTION,
        alphas=[float(a) for a in ALPHAS],
        criterion=config["pruning"]["criterion"],
        probability=config["pruning"]["probability"],
        seeds=prune_job_seeds,
        batch_size=config["evaluation"]["batch_size"],
        precision=config["evaluation"]["precision"],
        device=config["compute"]["device"],
    log:
        log_path("prune_stragglers", PRUNE_JOB),
    benchmark:
        benchmark_path("prune_stragglers", PRUNE_JOB)
    threads: GPU_JOB_THREADS
    resources:
        **gpu_job("pruning", SEEDS_PER_PRUNE_JOB),
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/prune_stragglers.py"
