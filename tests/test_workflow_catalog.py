"""What the Snakemake workflow catalog needs to list this workflow under "standardized usage"
(its documented rules, as of the catalog's `source/docs/about/adding_workflows.md` and
generator): a README naming Snakemake and workflows, `workflow/Snakefile`, `.smk` rule modules,
`config/README.md`, and a `.snakemake-workflow-catalog.yml` in the format it reads. The usage
command the file gives must plan the same DAG through `workflow/Snakefile` as through the
top-level Snakefile, and config/README.md must document exactly the schema's keys. (The catalog
also runs `snakemake --lint`: tests/test_workflow.py keeps it clean.)"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from test_workflow import job_counts

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT / ".snakemake-workflow-catalog.yml"
#: Deployment methods the catalog renders (it reads "singularity" as "apptainer").
DEPLOYMENT_KEYS = {"conda", "apptainer", "apptainer+conda", "singularity", "singularity+conda"}


def _config_reference():
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "scripts" / "config-reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_repository_layout_meets_the_catalog_rules():
    readme = (ROOT / "README.md").read_text().lower()
    assert "snakemake" in readme and "workflow" in readme
    assert (ROOT / "workflow" / "Snakefile").is_file(), "standardized usage needs workflow/Snakefile"
    for rules in (ROOT / "rules", ROOT / "workflow" / "rules"):
        if rules.is_dir():
            assert any(path.suffix == ".smk" for path in rules.iterdir()), f"{rules} holds no .smk module"
    assert (ROOT / "config" / "README.md").is_file(), "standardized usage needs config/README.md"


def test_catalog_file_has_the_format_the_catalog_reads():
    usage = yaml.safe_load(CATALOG.read_text())["usage"]
    assert set(usage) <= {"mandatory-flags", "software-stack-deployment", "report"}, set(usage)
    flags = usage["mandatory-flags"]
    assert set(flags) == {"desc", "flags"} and isinstance(flags["desc"], str) and flags["desc"].strip()
    assert isinstance(flags["flags"], (str, list))
    deployment = usage["software-stack-deployment"]
    assert set(deployment) <= DEPLOYMENT_KEYS, set(deployment) - DEPLOYMENT_KEYS
    assert all(isinstance(value, bool) for value in deployment.values()), deployment
    assert isinstance(usage["report"], bool)


def test_catalog_usage_command_plans_the_same_dag_through_workflow_snakefile(tmp_path):
    """The catalog runs `snakemake` with the file's flags from a deployment's root, where it finds
    workflow/Snakefile; that must be the same workflow as the top-level Snakefile."""
    flags = yaml.safe_load(CATALOG.read_text())["usage"]["mandatory-flags"]["flags"]
    flags = shlex.split(flags) if isinstance(flags, str) else list(flags)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    counts = {}
    for snakefile in ("workflow/Snakefile", "Snakefile"):
        command = [sys.executable, "-m", "snakemake", "-s", snakefile, "-d", str(tmp_path / snakefile.replace("/", "_")),
                   *flags, "-n", "--quiet", "rules"]
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        counts[snakefile] = job_counts(result.stdout + result.stderr)
    # workflow/Snakefile's own target stands in for `all` (both ask for the report alone).
    through_workflow, top_level = dict(counts["workflow/Snakefile"]), dict(counts["Snakefile"])
    assert through_workflow.pop("all_from_workflow_dir") == top_level.pop("all") == 1
    assert through_workflow == top_level and "report_html" in top_level


def test_config_readme_documents_exactly_the_schema():
    reference = _config_reference()
    schema = yaml.safe_load((ROOT / "workflow_schemas" / "config.schema.yaml").read_text())
    readme = (ROOT / "config" / "README.md").read_text()
    assert reference.render(readme, schema) == readme, "config/README.md lags behind the schema: run scripts/config-reference.py"
    keys = [key for key, *_ in reference.rows(schema["properties"])]
    assert "compute.device" in keys and "datasets.sources.<name>.path" in keys and len(keys) == len(set(keys))
