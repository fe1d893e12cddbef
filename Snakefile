"""interpsharp: when does weight-space interpolation of CLIP succeed?

    snakemake -n                               # paper world (config.yaml): the whole DAG
    snakemake --profile profiles/demo          # demo world on a CPU (= make demo)

Every run ends with results/<world>/report.html (Figures 1-5, tables, captions).

Settings: config.yaml, documented in workflow_schemas/config.schema.yaml. Results go to
results/<world>/, downloads, caches and checkpoints to resources/<world>/.
"""

import os

from snakemake.utils import min_version

min_version("8.10")


configfile: "config.yaml"


# The report's front page: the workflow description, or the landing page the report_html rule
# writes (results, claims and that description) for the nested `snakemake --report` it runs.
report: os.environ.get("INTERPSHARP_REPORT_TEXT", "report/workflow.rst")


include: "rules/common.smk"


# The two worlds differ only in how checkpoints and caches are made.
if WORLD == "demo":

    include: "rules/demo.smk"

else:

    include: "rules/checkpoints.smk"
    include: "rules/data.smk"


include: "rules/evaluate.smk"
include: "rules/layerwise.smk"
include: "rules/sharpness.smk"
include: "rules/stragglers.smk"
include: "rules/tables.smk"
include: "rules/reproduction.smk"
include: "rules/figures.smk"
include: "rules/provenance.smk"
include: "rules/report.smk"


rule all:
    input:
        f"{RESULTS}/report.html",
    default_target: True
