"""The HTML report as the DAG's last job, so `make demo` (and any run) ends with
results/<world>/report.html. Snakemake writes reports only in a separate invocation; this rule
makes it, on the same Snakefile and the same (validated) config, for the figure and table
targets only, so the nested call never waits on the outer run's lock or on this job. Its front
page is a landing page written here: a failed reproduction check first (when any published
number is out of tolerance), what the figures of this run show and do not show, the main OOD
set's outcome table and one sentence per claim of the paper, above the workflow description."""


rule report_html:
    input:
        outputs=all_outputs(),
        summary=f"{RESULTS}/tables/summary.tsv",
        claims=f"{RESULTS}/tables/claims.tsv",
        reproduction=f"{RESULTS}/tables/reproduction_check.tsv",
        # what interpsharp.demo.content reads: what the figures show, on the front page
        heldout_gains=f"{RESULTS}/tables/heldout_gains.tsv",
        stragglers=f"{RESULTS}/tables/stragglers.tsv",
        evaluation=f"{RESULTS}/tables/evaluation.tsv",
        pruning=f"{RESULTS}/tables/pruning.tsv",
        layerwise_interpolation=f"{RESULTS}/tables/layerwise_interpolation.tsv",
        path_metrics=f"{RESULTS}/tables/path_metrics.tsv",
    output:
        f"{RESULTS}/report.html",
    params:
        snakefile=workflow.main_snakefile,
        workflow_text=str(Path(workflow.basedir) / "report" / "workflow.rst"),
        main_ood=MAIN_OOD,
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
