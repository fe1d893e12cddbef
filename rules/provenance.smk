"""The run record, after every figure and table: code, config, environment, seeds, command line,
checkpoint and cache hashes, and each table's stamp (interpsharp.provenance). Nothing reads it
but the report, so it never makes other jobs rerun; it is remade whenever a result is."""


rule record_provenance:
    input:
        results=result_files(),
        checkpoints=[zeroshot_checkpoint(), *expand(f"{RESOURCES}/checkpoints/{{model}}.pt", model=MODELS)],
        caches=cache_dirs(DATASETS),
    output:
        json=report(
            f"{RESULTS}/provenance.json",
            caption="../report/provenance.rst",
            category="Provenance",
            labels={"file": "provenance.json"},
        ),
        html=report(
            f"{RESULTS}/provenance.html",
            caption="../report/provenance.rst",
            category="Provenance",
            labels={"file": "summary"},
        ),
    params:
        # In the order their values were merged: the command line's (or profile's) files last.
        config_files=lambda wildcards: config_files_in_merge_order(),
    log:
        log_path("record_provenance"),
    benchmark:
        benchmark_path("record_provenance")
    threads: 1
    resources:
        **cpu_job("summary"),
    localrule: True
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/record_provenance.py"
