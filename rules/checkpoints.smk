"""Paper and custom worlds: the checkpoints. The fine-tuned models are model-soups checkpoints
downloaded by index (finetuned.models) or your own files (finetuned.checkpoints: a path or a
URL each), which are imported into the same format after checking they have theta_0's
architecture. theta_0 is built from an open_clip model and the ID set's class names. The demo
world replaces this file."""

# Downloads run where Snakemake runs (a cluster's login node), not as cluster jobs: compute
# nodes are often offline, and a download needs no GPU.
localrules:
    download_finetuned,


rule download_finetuned:
    output:
        FINETUNED_DOWNLOAD,
    wildcard_constraints:
        model=regex_alternatives(DOWNLOADED_MODELS) or "(?!)",
    params:
        url=finetuned_url,
        sha256=finetuned_sha256,
        manifest=MANIFEST,
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


if CHECKPOINT_FILES:

    rule import_finetuned:
        input:
            checkpoint=finetuned_file,
            zeroshot=zeroshot_checkpoint(),
            head=finetuned_head_file,
            classes=ID_CLASSES,
            templates=config["zeroshot"]["templates"] or [],
        output:
            f"{RESOURCES}/checkpoints/{{model}}.pt",
        params:
            head=lambda wildcards: checkpoint_entry(wildcards.model).get("head"),
            sha256=lambda wildcards: checkpoint_entry(wildcards.model).get("sha256"),
            local=lambda wildcards: "path" in checkpoint_entry(wildcards.model),
            model_name=config["zeroshot"]["model_name"],
            model_config=config["zeroshot"]["model_config"],
            device=config["compute"]["device"],
        log:
            log_path("import_finetuned", "{model}"),
        benchmark:
            benchmark_path("import_finetuned", "{model}")
        threads: GPU_JOB_THREADS
        resources:
            **gpu_job("checkpoint"),
        conda:
            "../envs/interpsharp.yaml"
        script:
            "../workflow_scripts/import_finetuned.py"


rule build_zeroshot_classifier:
    input:
        classes=ID_CLASSES,
        templates=config["zeroshot"]["templates"] or [],
        weights=local_weights(config["zeroshot"]["pretrained"]),
        model_config=config["zeroshot"]["model_config"] or [],
    output:
        zeroshot_checkpoint(),
    params:
        model_name=config["zeroshot"]["model_name"],
        pretrained=config["zeroshot"]["pretrained"],
        model_config=config["zeroshot"]["model_config"],
        mean=config["zeroshot"]["mean"],
        std=config["zeroshot"]["std"],
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
