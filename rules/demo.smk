"""Demo world: builds, offline on a CPU, the same files the paper world downloads: evaluation
caches (one per shape style), theta_0 (a tiny CLIP pretrained here, with its zero-shot head)
and the fine-tuned checkpoints model_{i}.pt of a sweep. Every rule gets only the settings it
depends on as params, so changing one recipe refits one model."""

DEMO = config["demo"]


rule demo_images:
    output:
        directory(cache_dir("{dataset}")),
    params:
        seed=DEMO["seed"],
        image_size=DEMO["image_size"],
        # The main OOD set may be larger (demo.set_images); its first images are the same.
        n_images=lambda wildcards: DEMO["set_images"].get(wildcards.dataset, DEMO["eval_images"]),
    log:
        log_path("demo_images", "{dataset}"),
    benchmark:
        benchmark_path("demo_images", "{dataset}")
    threads: 1
    resources:
        **cpu_job("cache"),
    group:
        "demo_images"
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/demo_images.py"


rule demo_train_images:
    output:
        directory(f"{RESOURCES}/train/photo_train"),
    params:
        seed=DEMO["seed"],
        image_size=DEMO["image_size"],
        n_images=DEMO["train_images"],
    log:
        log_path("demo_train_images"),
    benchmark:
        benchmark_path("demo_train_images")
    threads: 1
    resources:
        **cpu_job("cache"),
    group:
        "demo_images"
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/demo_images.py"


rule demo_pretrain:
    output:
        clip=f"{RESOURCES}/checkpoints/clip.pt",
        record=f"{RESOURCES}/checkpoints/clip.json",
    params:
        seed=DEMO["seed"],
        image_size=DEMO["image_size"],
        pretrain=canonical(DEMO["pretrain"]),
    log:
        log_path("demo_pretrain"),
    benchmark:
        benchmark_path("demo_pretrain")
    # Every other model job waits for it (config/demo.yaml: both cores, other jobs one each).
    threads: PRETRAIN_THREADS
    resources:
        **gpu_job("checkpoint"),
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/demo_pretrain.py"


rule demo_zeroshot:
    input:
        clip=f"{RESOURCES}/checkpoints/clip.pt",
    output:
        checkpoint=zeroshot_checkpoint(),
        record=f"{RESOURCES}/checkpoints/zeroshot.json",
    log:
        log_path("demo_zeroshot"),
    benchmark:
        benchmark_path("demo_zeroshot")
    threads: GPU_JOB_THREADS
    resources:
        **gpu_job("checkpoint"),
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/demo_zeroshot.py"


rule demo_finetune:
    input:
        zeroshot=zeroshot_checkpoint(),
        train=f"{RESOURCES}/train/photo_train",
    output:
        checkpoint=f"{RESOURCES}/checkpoints/{{model}}.pt",
        record=f"{RESOURCES}/checkpoints/{{model}}.json",
    params:
        seed=DEMO["seed"],
        index=lambda wildcards: MODELS.index(wildcards.model),
        recipe=lambda wildcards: canonical(DEMO["finetune"]["recipes"][MODELS.index(wildcards.model)]),
    log:
        log_path("demo_finetune", "{model}"),
    benchmark:
        benchmark_path("demo_finetune", "{model}")
    threads: GPU_JOB_THREADS
    resources:
        **gpu_job("checkpoint"),
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/demo_finetune.py"
