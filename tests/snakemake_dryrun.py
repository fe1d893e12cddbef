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


#: The marker of profiles/slurm's commented-out GPU request line for gres-only sites.
GRES_ONLY_MARK = "# gres-only sites"


def gres_only_profile(profile_text: str) -> str:
    """profiles/slurm's text with its documented gres switch applied, exactly as its comment tells
    a user: the first ``evaluate_interpolation: &gpu_rule`` line commented out, the gres one
    uncommented."""
    lines = profile_text.splitlines(keepends=True)
    default = [i for i, line in enumerate(lines) if line.startswith("  evaluate_interpolation: &gpu_rule")]
    gres = [i for i, line in enumerate(lines) if line.startswith("  # evaluate_interpolation: &gpu_rule") and GRES_ONLY_MARK in line]
    if len(default) != 1 or len(gres) != 1:
        raise ValueError(f"profiles/slurm no longer has one default and one gres-only GPU request line ({default}, {gres})")
    lines[default[0]] = "  # " + lines[default[0]][2:]
    lines[gres[0]] = "  " + lines[gres[0]][4:]
    return "".join(lines)
