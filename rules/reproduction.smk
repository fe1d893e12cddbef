"""Checks against published numbers: alpha = 0 against open_clip's zero-shot table and
alpha = 1 against model-soups' results, on every evaluation set that has them. The demo world
has nothing published; the rule still runs there and says so row by row, so the CI world
exercises it like every other rule."""


rule check_reproduction:
    input:
        evaluation=f"{RESULTS}/tables/evaluation.tsv",
    output:
        report(
            f"{RESULTS}/tables/reproduction_check.tsv",
            caption="../report/reproduction_check.rst",
            category="Tables",
            labels={"table": "reproduction check"},
        ),
    params:
        world=WORLD,
        datasets=DATASETS,
        models=MODELS,
        zeroshot_model=config["zeroshot"]["model_name"],
        zeroshot_pretrained=config["zeroshot"]["pretrained"],
        zeroshot_tolerance_points=config["reproduction"]["zeroshot_tolerance_points"],
        finetuned_tolerance_points=config["reproduction"]["finetuned_tolerance_points"],
        precision=config["evaluation"]["precision"],
    log:
        log_path("check_reproduction"),
    benchmark:
        benchmark_path("check_reproduction")
    threads: 1
    resources:
        **cpu_job("summary"),
    group:
        "tables"
    conda:
        "../envs/interpsharp.yaml"
    script:
        "../workflow_scripts/check_reproduction.py"
