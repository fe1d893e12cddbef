"""Write the workflow's HTML report (figures, tables, captions) with a nested `snakemake --report`
on the same Snakefile and config; the outer run holds the lock and marks this job's output
incomplete, hence --nolock and --ignore-incomplete."""

import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from workflow_job import start

start(snakemake, torch_threads=False)

with tempfile.TemporaryDirectory(prefix="interpsharp-report-") as tmp:
    configfile = Path(tmp) / "config.yaml"
    configfile.write_text(yaml.safe_dump(dict(snakemake.params.config)))
    command = [
        sys.executable, "-m", "snakemake", "-s", snakemake.params.snakefile, "-d", ".", "--configfile", str(configfile),
        "--report", snakemake.output[0], "--nolock", "--ignore-incomplete", *snakemake.params.targets,
    ]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True, stdout=sys.stdout, stderr=sys.stdout)
