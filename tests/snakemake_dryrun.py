"""Reading a Snakemake dry run: what each job of the DAG would ask for. Shared by the profile
tests (tests/test_profiles.py) and the SLURM harness (tests/slurm/)."""

from __future__ import annotations

import re


def job_resources(output: str) -> dict[str, list[dict[str, str]]]:
    """Per rule, the ``resources:`` of each job printed by ``snakemake -n``, grouped jobs
    included: one entry per job, so the lists' lengths are the DAG's job counts."""
    table: dict[str, list[dict[str, str]]] = {}
    rule = None
    for line in output.splitlines():
        header = re.match(r"\s*(?:local)?rule (\w+):", line)
        if header:
            rule = header.group(1)
            continue
        resources = re.match(r"\s*resources: (.*)", line)
        if resources and rule:
            table.setdefault(rule, []).append(dict(item.split("=", 1) for item in resources.group(1).split(", ")))
            rule = None
    return table


def gpu_rules(output: str) -> set[str]:
    """Rules whose jobs ask for at least one GPU (resource ``gpu``) in a dry run's output."""
    return {rule for rule, jobs in job_resources(output).items() if any(int(job.get("gpu", 0)) > 0 for job in jobs)}
