"""Layer-wise interpolation (Def. 1.1): per model, every layer of theta_1 interpolated alone
while the rest stays theta_0, over every alpha (the main OOD set also per part of its
selection split); then the layer-wise instability that makes a layer a straggler by
interpolation, under both readings of Def. 1.1's reference loss."""


rule layerwise_interpolation:
    input:
        zeroshot=zeroshot_checkpoint(),
        finetuned=finetuned_checkpoint,
        caches=cache_dirs(LAYERWISE_DATASETS),
    output:
        f"{RESULTS}/layerwise_interpolation/{{model}}.tsv",
    params:
        datasets=LAYERWISE_DATASETS,
        main_ood=MAIN_OOD,
        selection=SELECTION,
        alphas=[float(a) for a in LAYERWISE_ALPHAS],
        batch_size=config["layerwise_interpolation"]["batch_size"],
        precision=config["layerwise_interpolation"]["precision"],
        device=config["compute"]["device"],
    log:
        log_path("layerwise_interpolation", "{model}"),
    benchmark:
        benchmark_path("layerwise_interpolation", "{model}")
    threads: GPU_JOB_THREADS
    resources:
        **gpu_job("layerwise_interpolation"),
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/layerwise_interpolation.py"


rule layerwise_instability:
    input:
        layerwise=f"{RESULTS}/tables/layerwise_interpolation.tsv",
        path_metrics=f"{RESULTS}/tables/path_metrics.tsv",
    output:
        report(
            f"{RESULTS}/tables/layerwise_instability.tsv",
            caption="../report/layerwise_instability.rst",
            category="Tables",
            labels={"table": "layer-wise instability"},
        ),
    log:
        log_path("layerwise_instability"),
    benchmark:
        benchmark_path("layerwise_instability")
    threads: 1
    resources:
        **cpu_job("summary"),
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/layerwise_instability.py"
