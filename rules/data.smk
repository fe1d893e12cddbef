"""Paper world: evaluation caches. Archives are downloaded (verified against the manifest or a
pinned sha256), unpacked, and decoded once into memory-mapped caches; user-provided sets
(ImageNet, ImageNet-Sketch) are decoded from the folder the config names. The demo world
replaces this file."""

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
        manifest=f"{RESOURCES}/downloads/manifest.json",
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
        manifest=f"{RESOURCES}/downloads/manifest.json",
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


rule build_cache:
    input:
        # A user-provided folder is a param, not an input: a missing one must not break
        # `snakemake -n`; onstart checks it before a real run.
        raw=lambda wildcards: f"{RESOURCES}/raw/{wildcards.dataset}" if "url" in source_of(wildcards) else [],
    output:
        directory(cache_dir("{dataset}")),
    params:
        layout=lambda wildcards: source_of(wildcards)["layout"],
        root=cache_source_folder,
        user_provided=lambda wildcards: "path" in source_of(wildcards),
        image_size=config["datasets"]["image_size"],
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
