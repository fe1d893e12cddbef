"""The HTML report as the DAG's last job, so `make demo` (and any run) ends with
results/<world>/report.html. Snakemake writes reports only in a separate invocation; this rule
makes it, on the same Snakefile and the same (validated) config, for the figure and table
targets only, so the nested call never waits on the outer run's lock or on this job."""


rule report_html:
    input:
        all_outputs(),
    output:
        f"{RESULTS}/report.html",
    params:
        snakefile=workflow.main_snakefile,
        config=canonical(config),
        targets=all_outputs(),
    log:
        log_path("report_html"),
    benchmark:
        benchmark_path("report_html")
    threads: 1
    resources:
        **cpu_job("summary"),
    localrule: True
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/report_html.py"
