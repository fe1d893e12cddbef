"""Paper world: the checkpoints. Downloads the model-soups fine-tunes and builds the zero-shot
classifier theta_0 from open_clip's OpenAI weights. The demo world replaces this file."""

# Downloads run where Snakemake runs (a cluster's login node), not as cluster jobs: compute
# nodes are often offline, and a download needs no GPU.
localrules:
    download_finetuned,


rule download_finetuned:
    output:
        f"{RESOURCES}/checkpoints/{{model}}.pt",
    params:
        url=lambda wildcards: config["finetuned"]["url"].format(i=wildcards.model.removeprefix("model_")),
        sha256=lambda wildcards: config["finetuned"]["sha256"].get(wildcards.model.removeprefix("model_")),
        manifest=f"{RESOURCES}/downloads/manifest.json",
    log:
        log_path("download_finetuned", "{model}"),
    benchmark:
        benchmark_path("download_finetuned", "{model}")
    threads: 1
    resources:
        **cpu_job("download"),
    retries: 2
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/download_file.py"


rule build_zeroshot_classifier:
    output:
        zeroshot_checkpoint(),
    params:
        model_name=config["zeroshot"]["model_name"],
        pretrained=config["zeroshot"]["pretrained"],
        head_width=config["zeroshot"]["head_width"],
        cache_dir=f"{RESOURCES}/open_clip",
        device=config["compute"]["device"],
    log:
        log_path("build_zeroshot_classifier"),
    benchmark:
        benchmark_path("build_zeroshot_classifier")
    threads: GPU_JOB_THREADS
    resources:
        **gpu_job("checkpoint"),
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/build_zeroshot_classifier.py"
