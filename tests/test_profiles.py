"""The cluster profiles, checked without a cluster: dry runs of both worlds through
profiles/slurm and profiles/workstation say what every job would ask for.

Which rules are GPU rules comes from the workflow itself (the jobs that ask for a GPU when the
config runs on CUDA), never from the profile, so a new GPU rule the profile forgets fails
here. The real submission is tested by `make test-slurm` (tests/slurm/).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from snakemake_dryrun import gpu_rules, gres_only_profile, job_resources

ROOT = Path(__file__).resolve().parents[1]
WORLDS = {"paper": [ROOT / "config.yaml"], "demo": [ROOT / "config.yaml", ROOT / "config" / "demo.yaml"]}


def dry_run(workdir: Path, configs: list[Path], *args: str) -> str:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-n", "--configfile", *map(str, configs), *args]
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def cuda_gpu_rules(workdir: Path, configs: list[Path]) -> set[str]:
    """The world's GPU rules: those asking for a GPU once the config runs on CUDA."""
    cuda = workdir / "cuda.yaml"
    cuda.write_text(yaml.safe_dump({"compute": {"device": "cuda", "gpus": 1}}))
    return gpu_rules(dry_run(workdir, [*configs, cuda]))


@pytest.mark.parametrize("world", sorted(WORLDS))
def test_slurm_profile_gives_gpu_jobs_one_gpu_on_the_gpu_partition(tmp_path, world):
    configs = WORLDS[world]
    expected = cuda_gpu_rules(tmp_path, configs)
    assert expected, "the workflow has no GPU rule at all"
    jobs = job_resources(dry_run(tmp_path, configs, "--profile", str(ROOT / "profiles" / "slurm")))
    assert expected <= set(jobs), f"GPU rules missing from the DAG: {expected - set(jobs)}"
    for rule, resources in jobs.items():
        for job in resources:
            if rule in expected:
                assert (job.get("gpu"), job.get("slurm_partition")) == ("1", "gpu"), f"{rule}: {job}"
            else:
                assert int(job.get("gpu", 0)) == 0 and job.get("slurm_partition") == "cpu", f"{rule}: {job}"
            assert job.get("runtime") and job.get("mem_mb"), f"{rule} has no wall time or memory for sbatch: {job}"


def test_workstation_profile_caps_gpu_jobs_at_its_gpu_count(tmp_path):
    profile = yaml.safe_load((ROOT / "profiles" / "workstation" / "config.yaml").read_text())
    limits = dict(entry.split("=") for entry in profile["resources"])
    assert int(limits["gpu"]) >= 1 and profile["executor"] == "local"
    configs = WORLDS["paper"]
    expected = cuda_gpu_rules(tmp_path, configs)
    jobs = job_resources(dry_run(tmp_path, configs, "--profile", str(ROOT / "profiles" / "workstation")))
    # The cap only bounds jobs that declare their GPU: every CUDA job must ask for exactly one.
    for rule in expected:
        assert all(job.get("gpu") == "1" for job in jobs[rule]), f"{rule}: {jobs[rule]}"


def test_slurm_gres_switch_requests_gpus_as_gres_only(tmp_path):
    """The documented switch for gres-only sites: every GPU job asks for `gres=gpu:1` and no
    `gpu` (the plugin would send --gpus for that), still holds its gpu_slot, and no CPU job
    asks for a GPU either way. (`make test-slurm` submits it to a gres-only cluster.)"""
    configs = WORLDS["demo"]
    expected = cuda_gpu_rules(tmp_path, configs)
    profile = tmp_path / "slurm-gres"
    profile.mkdir()
    (profile / "config.yaml").write_text(gres_only_profile((ROOT / "profiles" / "slurm" / "config.yaml").read_text()))
    jobs = job_resources(dry_run(tmp_path, configs, "--profile", str(profile)))
    assert expected <= set(jobs)
    for rule, resources in jobs.items():
        for job in resources:
            if rule in expected:
                asked = (job.get("gres"), int(job.get("gpu", 0)), job.get("gpu_slot"), job.get("slurm_partition"))
                assert asked == ("gpu:1", 0, "1", "gpu"), f"{rule}: {job}"
            else:
                assert "gres" not in job and int(job.get("gpu", 0)) == 0, f"{rule}: {job}"
