"""Paper and custom worlds: evaluation caches. Archives are downloaded (verified against the
manifest or a pinned sha256), unpacked, and decoded once into memory-mapped caches;
user-provided sets (ImageNet, ImageNet-Sketch, ObjectNet, your image folders) are decoded from
the folder the config names. Every set's classes are checked against the ID set's, which the
zero-shot head is built for. The demo world replaces this file."""

# See rules/checkpoints.smk: downloads are local jobs on a cluster.
localrules:
    download_dataset,


rule download_dataset:
    output:
        f"{RESOURCES}/downloads/{{dataset}}/{{archive}}",
    wildcard_constraints:
        dataset=regex_alternatives(DOWNLOADED) if DOWNLOADED else "(?!)",
        archive="[^/]+",
    params:
        url=lambda wildcards: source_of(wildcards)["url"],
        sha256=lambda wildcards: source_of(wildcards).get("sha256"),
        manifest=MANIFEST,
    log:
        log_path("download_dataset", "{dataset}/{archive}"),
    benchmark:
        benchmark_path("download_dataset", "{dataset}/{archive}")
    threads: 1
    resources:
        **cpu_job("download"),
    retries: 2
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/download_file.py"


rule unpack_dataset:
    input:
        archive=lambda wildcards: archive_path(wildcards.dataset),
    output:
        directory(f"{RESOURCES}/raw/{{dataset}}"),
    params:
        unpacked_root=lambda wildcards: source_of(wildcards)["unpacked_root"],
        manifest=MANIFEST,
        sha256=lambda wildcards: source_of(wildcards).get("sha256"),
    log:
        log_path("unpack_dataset", "{dataset}"),
    benchmark:
        benchmark_path("unpack_dataset", "{dataset}")
    threads: 1
    resources:
        **cpu_job("cache"),
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/unpack_dataset.py"


rule id_classes:
    input:
        raw=raw_input(ID_DATASET),
        class_files=class_files(ID_DATASET),
    output:
        ID_CLASSES,
    params:
        dataset=ID_DATASET,
        layout=config["datasets"]["sources"][ID_DATASET]["layout"],
        root=source_folder(ID_DATASET),
        classnames=config["datasets"]["sources"][ID_DATASET].get("classnames"),
    log:
        log_path("id_classes"),
    benchmark:
        benchmark_path("id_classes")
    threads: 1
    resources:
        **cpu_job("summary"),
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/id_classes.py"


rule build_cache:
    input:
        raw=lambda wildcards: raw_input(wildcards.dataset),
        class_files=lambda wildcards: class_files(wildcards.dataset),
        id_classes=ID_CLASSES,
    output:
        directory(cache_dir("{dataset}")),
    params:
        layout=lambda wildcards: source_of(wildcards)["layout"],
        root=cache_source_folder,
        user_provided=lambda wildcards: "path" in source_of(wildcards),
        classnames=lambda wildcards: source_of(wildcards).get("classnames"),
        subset=lambda wildcards: source_of(wildcards).get("subset", False),
        class_mapping=lambda wildcards: source_of(wildcards).get("class_mapping"),
        image_size=IMAGE_SIZE,
        limit=config["datasets"]["limit"],
    log:
        log_path("build_cache", "{dataset}"),
    benchmark:
        benchmark_path("build_cache", "{dataset}")
    threads: CPU_JOB_THREADS
    resources:
        **cpu_job("cache"),
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/build_cache.py"
