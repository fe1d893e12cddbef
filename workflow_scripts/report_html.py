"""Write the workflow's HTML report (figures, tables, captions) with a nested `snakemake --report`
on the same Snakefile and config, its front page the landing page (a failed reproduction check,
what the figures of this run show, results on the main OOD set, a verdict per claim, then the
workflow description); the outer run holds the lock and marks this job's output incomplete,
hence --nolock and --ignore-incomplete."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from workflow_job import start

start(snakemake, torch_threads=False)

from interpsharp.demo.content import TABLES, content_checks, content_rst
from interpsharp.landing import landing_page
from interpsharp.reproduction import reproduction_rst
from interpsharp.tables import read_tsv

params = snakemake.params
shown = content_checks({name: read_tsv(snakemake.input[name]) for name in TABLES}, params.main_ood)
page = landing_page(Path(params.workflow_text).read_text(), read_tsv(snakemake.input.summary),
                    read_tsv(snakemake.input.claims), params.main_ood,
                    blocks_first=[reproduction_rst(read_tsv(snakemake.input.reproduction)),
                                  content_rst(shown, params.main_ood)])
with tempfile.TemporaryDirectory(prefix="interpsharp-report-") as tmp:
    configfile = Path(tmp) / "config.yaml"
    configfile.write_text(yaml.safe_dump(dict(params.config)))
    landing = Path(tmp) / "landing.rst"
    landing.write_text(page)
    command = [
        sys.executable, "-m", "snakemake", "-s", params.snakefile, "-d", ".", "--configfile", str(configfile),
        "--report", snakemake.output[0], "--nolock", "--ignore-incomplete", *params.targets,
    ]
    print(" ".join(command), flush=True)
    env = {**os.environ, "INTERPSHARP_REPORT_TEXT": str(landing)}
    subprocess.run(command, check=True, stdout=sys.stdout, stderr=sys.stdout, env=env)
