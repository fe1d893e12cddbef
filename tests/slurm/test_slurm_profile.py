"""profiles/slurm against a real SLURM: the CI world submitted through sbatch equals a local run.

Run by `make test-slurm` (root only; `make test` skips it: it needs root and runs for
minutes). A module fixture starts the one-node test cluster (scripts/slurm-test-cluster.sh:
partitions `cpu` and `gpu`, two fake GPUs, no accounting) and at the end stops its daemons
by PID, checking that none survives. config/ci.yaml (with two of its three fine-tunes) then
runs twice at the same time, each in its own temporary working directory, both from one copy
of the working tree: through `--profile profiles/slurm --profile profiles/slurm-test` and
locally. The checks:

- every job of a GPU rule (a rule that asks for a GPU when the config runs on CUDA) was
  submitted asking for exactly one GPU on the gpu partition, and SLURM gave its batch
  environment one (CUDA_VISIBLE_DEVICES); CPU submissions asked for none;
- a model's batched path points went out as one submission, still asking for one GPU;
- every SLURM job completed, and every result TSV equals the local run's, exactly;
- a job fed a corrupt checkpoint is reported failed (by Snakemake and by SLURM) and
  Snakemake exits non-zero within a bounded time;
- with the cluster in gres-only mode (it refuses --gpus, as some sites do), profiles/slurm
  with its documented gres switch applied runs a model's batched path and a lone GPU job:
  each submission asks `--gres=gpu:1` and no `--gpus`, a batch still stacks its jobs on one
  GPU, SLURM gives each job one GPU, and the tables equal the local run's.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake_dryrun import gpu_rules as gpu_rules_of
from snakemake_dryrun import gres_only_profile, job_resources

if os.environ.get("INTERPSHARP_TEST_SLURM") != "1":
    pytest.skip("needs root and a SLURM test cluster: run `make test-slurm`", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "scripts" / "slurm-test-cluster.sh"
DAEMONS = ("munged", "slurmctld", "slurmd")
RUN_TIMEOUT_S = 2400  # a whole CI world on 2 shared cores
#: An overlay (written into the code copy) keeping the first two of config/ci.yaml's fine-tuning
#: recipes: what is checked here (submissions, GPUs, batches, equal tables) is per model, and
#: every model costs a dozen SLURM submissions of CI time.
TWO_MODELS = "slurm-test-two-models.yaml"
FAILURE_BOUND_S = 300  # the failing run must end (non-zero) within this


@dataclass(frozen=True)
class Code:
    """A copy of the working tree (tracked and untracked, not ignored files) that every run of
    this module uses, library included (PYTHONPATH): edits made in the checkout during the
    test's minutes cannot make the SLURM and the local run differ."""

    root: Path

    @property
    def snakefile(self) -> Path:
        return self.root / "Snakefile"

    @property
    def configs(self) -> list[str]:
        # config.yaml is what the Snakefile's `configfile:` reads inside the repository; in
        # another working directory it is passed explicitly, first. TWO_MODELS last.
        return [str(self.root / "config.yaml"), str(self.root / "config" / "ci.yaml"), str(self.root / TWO_MODELS)]

    @property
    def profiles(self) -> list[str]:
        return ["--profile", str(self.root / "profiles" / "slurm"), "--profile", str(self.root / "profiles" / "slurm-test")]

    @property
    def ci(self) -> dict:
        return yaml.safe_load((self.root / "config" / "ci.yaml").read_text())

    @property
    def slurm_profile(self) -> dict:
        return yaml.safe_load((self.root / "profiles" / "slurm" / "config.yaml").read_text())


@dataclass
class Run:
    """One Snakemake invocation: where it ran, how it ended, what it printed."""

    workdir: Path
    returncode: int | None  # None: killed after its time limit
    seconds: float
    output: str


@dataclass
class Started:
    """A Snakemake process running in the background (:func:`start_snakemake`)."""

    workdir: Path
    process: subprocess.Popen
    log: Path
    start: float


def start_snakemake(code: Code, workdir: Path, args: list[str], env: dict[str, str], targets: Sequence[str] = ()) -> Started:
    """Start Snakemake in ``workdir`` with the CI configs, its output going to a file there."""
    log = workdir / "snakemake.out"
    command = [sys.executable, "-m", "snakemake", "-s", str(code.snakefile), *targets, "--configfile", *code.configs, *args]
    with open(log, "w") as out:  # the child keeps its own handle
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Started(workdir, process, log, time.monotonic())


def finish(started: Started, timeout: float) -> Run:
    """Wait for a started run; past ``timeout`` seconds of its own, stop it with SIGINT, which
    makes the SLURM executor cancel its jobs (SIGTERM does not), then kill it."""
    left = max(1.0, timeout - (time.monotonic() - started.start))
    try:
        returncode = started.process.wait(timeout=left)
    except subprocess.TimeoutExpired:
        started.process.send_signal(signal.SIGINT)
        try:
            started.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            started.process.kill()
            started.process.wait()
        returncode = None
    return Run(started.workdir, returncode, time.monotonic() - started.start, started.log.read_text())


def run_snakemake(
    code: Code, workdir: Path, args: list[str], env: dict[str, str], timeout: float, targets: Sequence[str] = ()
) -> Run:
    """Run Snakemake in ``workdir`` with the CI configs, at most ``timeout`` seconds."""
    return finish(start_snakemake(code, workdir, args, env, targets), timeout)


def tail(run: Run, n: int = 6000) -> str:
    return f"snakemake in {run.workdir} (rc={run.returncode}, {run.seconds:.0f} s):\n{run.output[-n:]}"


# -- the cluster ---------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def slurm_env():
    """The environment clients need for the test cluster. The cluster is started here (or
    reused if one is up) and stopped at the end either way: no daemon outlives the test."""
    if os.geteuid() != 0:
        pytest.fail("make test-slurm needs root: it installs slurm-wlm and munge and starts their daemons")
    started = subprocess.run([str(CLUSTER), "start"], capture_output=True, text=True, timeout=600)
    try:
        assert started.returncode == 0, f"{CLUSTER} start failed:\n{started.stdout}\n{started.stderr}"
        state = Path(os.environ.get("INTERPSHARP_SLURM_STATE", "/tmp/interpsharp-slurm"))
        pids = {name: int((state / f"{name}.pid").read_text()) for name in DAEMONS}
        conf = subprocess.run([str(CLUSTER), "env"], capture_output=True, text=True, check=True).stdout
        yield {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "SLURM_CONF": conf.strip().split("=", 1)[1]}
    finally:
        stopped = subprocess.run([str(CLUSTER), "stop"], capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, f"{CLUSTER} stop failed:\n{stopped.stdout}\n{stopped.stderr}"
    survivors = {name: pid for name, pid in pids.items() if pid_alive(pid)}
    assert not survivors, f"daemons still running after `{CLUSTER} stop`: {survivors}"


@pytest.fixture(scope="module")
def code(tmp_path_factory) -> Code:
    root = tmp_path_factory.mktemp("code")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / os.fsdecode(name)
        if source.is_file():  # tracked files deleted in the checkout are listed too
            target = root / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    code = Code(root)
    recipes = code.ci["demo"]["finetune"]["recipes"]
    assert len(recipes) > 2, "config/ci.yaml has two recipes or fewer: drop TWO_MODELS"
    (root / TWO_MODELS).write_text(yaml.safe_dump({"demo": {"finetune": {"recipes": recipes[:2]}}}))
    return code


@pytest.fixture(scope="module")
def env(slurm_env, code) -> dict[str, str]:
    """The cluster's environment with the library imported from the copy (jobs inherit it:
    sbatch --export=ALL)."""
    env = {**slurm_env, "PYTHONPATH": str(code.root)}
    where = subprocess.run(  # from outside the checkout, like the jobs (cwd comes first in sys.path)
        [sys.executable, "-c", "import interpsharp; print(interpsharp.__file__)"],
        cwd=code.root.parent, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(code.root), f"interpsharp imported from {where}, not from the copy {code.root}"
    return env


def slurm_jobs(run_uuid: str, env: dict[str, str]) -> dict[str, dict[str, str]]:
    """Every SLURM job of one Snakemake run (they share its run ID as job name), as
    ``scontrol show job`` fields; squeue still lists finished ones (MinJobAge=3600)."""
    listed = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--format=%i", "--name", run_uuid],
        capture_output=True, text=True, env=env, check=True,
    ).stdout.split()
    jobs = {}
    for job_id in listed:
        shown = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, env=env, check=True)
        jobs[job_id] = dict(re.findall(r"(\w+(?:/\w+)?)=(\S*)", shown.stdout))
    return jobs


def run_uuid_of(run: Run) -> str:
    match = re.search(r"SLURM run ID: (\S+)", run.output)
    assert match, f"no SLURM run ID in the output\n{tail(run)}"
    return match.group(1)


# -- what Snakemake submitted --------------------------------------------------------------
@dataclass
class Submission:
    """One sbatch call: its options (``--key=value``, ``--key value``, ``-k value``; a flag maps
    to "") and the workflow jobs it carries."""

    options: dict[str, str]
    jobs: list[tuple[str, str]] = field(default_factory=list)  # (rule, wildcards)

    @property
    def partition(self) -> str | None:
        return self.options.get("-p")

    @property
    def account(self) -> str | None:
        return self.options.get("-A")

    @property
    def gpus(self) -> str | None:
        return self.options.get("--gpus")

    @property
    def gres(self) -> str | None:
        return self.options.get("--gres")

    @property
    def rules(self) -> set[str]:
        return {rule for rule, _ in self.jobs}


def sbatch_options(tokens: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for i, token in enumerate(tokens):
        if not token.startswith("-"):
            continue
        if token.startswith("--") and "=" in token:
            key, value = token.split("=", 1)
        else:
            following = tokens[i + 1] if i + 1 < len(tokens) else "-"
            key, value = token, ("" if following.startswith("-") else following)
        options.setdefault(key, value)
    return options


def submissions(run: Run) -> list[Submission]:
    """Parse the plugin's ``sbatch call:`` lines (printed with --verbose)."""
    found = []
    for line in run.output.splitlines():
        if "sbatch call: " not in line:
            continue
        options = sbatch_options(shlex.split(line.split("sbatch call: ", 1)[1]))
        wrapped = shlex.split(options["--wrap"])
        first = wrapped.index("--target-jobs") + 1
        targets = []
        for token in wrapped[first:]:
            if token.startswith("--"):
                break
            rule, _, wildcards = token.partition(":")
            targets.append((rule, wildcards))
        found.append(Submission(options, targets))
    return found


# -- runs ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpu_rules(tmp_path_factory, code, env) -> dict[str, int]:
    """GPU rules and their job counts in the CI DAG, from the workflow itself: the rules whose
    jobs ask for a GPU once the config runs on CUDA (independent of the profile)."""
    workdir = tmp_path_factory.mktemp("dryrun")
    cuda = workdir / "cuda.yaml"
    cuda.write_text(yaml.safe_dump({"compute": {"device": "cuda", "gpus": 1}}))
    command = [sys.executable, "-m", "snakemake", "-s", str(code.snakefile), "-n", "--configfile", *code.configs, str(cuda)]
    dry = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    output = dry.stdout + dry.stderr
    gpu = gpu_rules_of(output)
    counts = {rule: len(jobs) for rule, jobs in job_resources(output).items() if rule in gpu}
    assert counts, "no rule asks for a GPU under compute.device=cuda"
    return counts


@pytest.fixture(scope="module")
def runs(tmp_path_factory, code, env) -> tuple[Run, Run]:
    """The CI world through the SLURM profile (--verbose: the plugin prints its sbatch calls)
    and the same config run locally, side by side: the SLURM run spends most of its wall time
    waiting on submissions and status checks, which the local run fills. Sharing the cores
    changes no number (every job keeps its thread count), only the wall times."""
    local_env = {key: value for key, value in env.items() if key != "SLURM_CONF"}
    on_slurm = start_snakemake(code, tmp_path_factory.mktemp("slurm"), [*code.profiles, "--verbose"], env)
    here = start_snakemake(code, tmp_path_factory.mktemp("local"), ["--cores", str(os.cpu_count())], local_env)
    while (on_slurm.process.poll() is None and here.process.poll() is None
           and time.monotonic() - on_slurm.start < RUN_TIMEOUT_S):
        time.sleep(1)  # whichever ends first is finished at once, so each wall time is its own
    ended_first = sorted((on_slurm, here), key=lambda started: started.process.poll() is None)
    finished = {started.workdir: finish(started, RUN_TIMEOUT_S) for started in ended_first}
    slurm, local = finished[on_slurm.workdir], finished[here.workdir]
    print(f"SLURM run: {slurm.seconds:.0f} s wall, rc={slurm.returncode}; "
          f"local run beside it: {local.seconds:.0f} s wall, rc={local.returncode}")
    return slurm, local


@pytest.fixture(scope="module")
def slurm_run(runs) -> Run:
    return runs[0]


@pytest.fixture(scope="module")
def local_run(runs) -> Run:
    return runs[1]


# -- tests ---------------------------------------------------------------------------------
def test_slurm_run_completes(slurm_run, code, slurm_env):
    assert slurm_run.returncode == 0, tail(slurm_run)
    assert re.search(r"(\d+) of \1 steps \(100%\) done", slurm_run.output), tail(slurm_run)
    jobs = slurm_jobs(run_uuid_of(slurm_run), slurm_env)
    assert jobs, "squeue lists no job of this run"
    states = {job_id: fields["JobState"] for job_id, fields in jobs.items()}
    assert set(states.values()) == {"COMPLETED"}, states
    subs = submissions(slurm_run)
    assert len(jobs) == len(subs), f"SLURM knows {len(jobs)} jobs, {len(subs)} were submitted"
    account = code.slurm_profile["default-resources"]["slurm_account"]
    assert {sub.account for sub in subs} == {account}, "not every submission carries the profile's account"


def test_every_gpu_job_asks_for_and_gets_one_gpu(slurm_run, gpu_rules, slurm_env):
    subs = submissions(slurm_run)
    assert subs, f"no sbatch call in the output\n{tail(slurm_run)}"
    submitted = {rule: 0 for rule in gpu_rules}
    for sub in subs:
        # The locked plugin (2.8) adds no --ntasks-per-gpu, which some sites refuse beside
        # --cpus-per-task (profiles/slurm says what to do with an older plugin).
        assert "--ntasks-per-gpu" not in sub.options and sub.gres is None, f"{sub.jobs}: {sub.options}"
        gpu_jobs = sub.rules & set(gpu_rules)
        if not gpu_jobs:
            assert sub.gpus is None, f"CPU-only submission {sub.jobs} asks for GPUs: --gpus={sub.gpus}"
            assert sub.partition == "cpu", f"{sub.jobs} went to partition {sub.partition}"
            continue
        assert sub.rules <= set(gpu_rules), f"one submission mixes GPU and CPU rules: {sub.jobs}"
        assert sub.gpus is not None and sub.gpus.split(":")[-1] == "1", f"{sub.jobs}: --gpus={sub.gpus}, expected one GPU"
        assert sub.partition == "gpu", f"{sub.jobs} went to partition {sub.partition}"
        for rule, _ in sub.jobs:
            submitted[rule] += 1
    assert submitted == gpu_rules, f"GPU jobs submitted per rule {submitted}, DAG has {gpu_rules}"
    # SLURM's side: what it recorded and what the batch environment got (the jobstep executor
    # logs its environment with --verbose; the test profile keeps the logs).
    n_gpu_submissions = sum(1 for sub in subs if sub.rules & set(gpu_rules))
    jobs = slurm_jobs(run_uuid_of(slurm_run), slurm_env)
    on_gpu = {job_id: f for job_id, f in jobs.items() if f["Partition"] == "gpu"}
    assert len(on_gpu) == n_gpu_submissions, f"{len(on_gpu)} jobs on the gpu partition, {n_gpu_submissions} GPU submissions"
    for job_id, fields in jobs.items():
        given = re.findall(r"'CUDA_VISIBLE_DEVICES': '([^']*)'", Path(fields["StdOut"]).read_text())
        if job_id in on_gpu:
            assert fields.get("TresPerJob") == "gres:gpu:1", f"job {job_id}: TresPerJob={fields.get('TresPerJob')}"
            assert len(set(given)) == 1 and given[0] in ("0", "1"), f"job {job_id} ({fields['StdOut']}): GPUs {given}"
        else:
            assert "TresPerJob" not in fields and not given, f"CPU job {job_id} has GPUs: {fields.get('TresPerJob')} {given}"


def test_path_points_of_a_model_are_batched_on_one_gpu(slurm_run, code):
    batched = [sub for sub in submissions(slurm_run) if sub.rules == {"evaluate_interpolation"}]
    assert batched, "no submission carried evaluate_interpolation jobs"
    alphas = code.ci["interpolation"]["alphas"]
    components = dict(entry.split("=") for entry in code.slurm_profile["group-components"])
    per_batch = int(components["path_evaluation_{model}"])
    for sub in batched:
        models = {re.search(r"model=([^,]+)", wildcards).group(1) for _, wildcards in sub.jobs}
        assert len(models) == 1, f"one batch mixes models: {sub.jobs}"
        assert len(sub.jobs) == min(len(alphas), per_batch), f"batch of {len(sub.jobs)} jobs: {sub.jobs}"
        assert sub.gpus.split(":")[-1] == "1", f"a batch of {len(sub.jobs)} jobs asks for --gpus={sub.gpus}"


def result_tables(run: Run, world: str) -> dict[str, Path]:
    """Every TSV the run wrote under results/<world>/, except Snakemake's timing benchmarks."""
    results = run.workdir / "results" / world
    return {
        str(path.relative_to(results)): path
        for path in sorted(results.rglob("*.tsv"))
        if path.relative_to(results).parts[0] != "benchmarks"
    }


def test_results_equal_a_local_run(slurm_run, local_run, code):
    assert slurm_run.returncode == 0, tail(slurm_run)
    assert local_run.returncode == 0, tail(local_run)
    on_slurm, here = result_tables(slurm_run, code.ci["world"]), result_tables(local_run, code.ci["world"])
    assert here and sorted(on_slurm) == sorted(here), sorted(set(on_slurm) ^ set(here))
    differing = []
    for name, path in here.items():
        expected = pd.read_csv(path, sep="\t", keep_default_na=False)
        actual = pd.read_csv(on_slurm[name], sep="\t", keep_default_na=False)
        # Same threads per job on the same CPU: the numbers must agree to the last bit.
        if not expected.equals(actual):
            differing.append(name)
    assert not differing, f"tables differing between the SLURM and the local run: {differing}"
    print(f"wall time: SLURM {slurm_run.seconds:.0f} s, local {local_run.seconds:.0f} s, {len(here)} tables equal")


def test_failing_job_is_reported_and_stops_the_run(slurm_run, code, env, slurm_env, tmp_path_factory):
    """Evaluate model_0's path from a corrupt checkpoint (copied inputs, nothing upstream to
    rerun): the batch fails on the node; Snakemake must say so and exit non-zero in time."""
    assert slurm_run.returncode == 0, tail(slurm_run)
    world = code.ci["world"]
    workdir = tmp_path_factory.mktemp("failure")
    shutil.copytree(slurm_run.workdir / "resources", workdir / "resources")  # keeps mtimes
    broken = workdir / "resources" / world / "checkpoints" / "model_0.pt"
    broken.write_bytes(b"not a checkpoint\n")
    targets = [f"results/{world}/evaluation/model_0/alpha_{float(a):.3f}.tsv" for a in code.ci["interpolation"]["alphas"]]
    run = run_snakemake(code, workdir, [*code.profiles, "--verbose"], env, FAILURE_BOUND_S, targets=targets)
    assert run.returncode is not None, f"still running after {FAILURE_BOUND_S} s\n{tail(run)}"
    assert run.returncode != 0, tail(run)
    assert "Error in group path_evaluation_model_0" in run.output, tail(run)
    subs = submissions(run)
    assert [sub.rules for sub in subs] == [{"evaluate_interpolation"}], f"expected only model_0's batch: {subs}"
    states = [fields["JobState"] for fields in slurm_jobs(run_uuid_of(run), slurm_env).values()]
    assert states == ["FAILED"], states
    rule_log = workdir / "results" / world / "logs" / "evaluate_interpolation" / "model_0"
    messages = "".join(path.read_text() for path in rule_log.glob("*.log"))
    assert "model_0.pt" in messages, f"the rule log does not name the broken checkpoint:\n{messages[-3000:]}"
    assert not any((workdir / t).exists() for t in targets), "a failed job left an output behind"
    print(f"failure run: rc={run.returncode} after {run.seconds:.0f} s")


# -- gres-only sites -----------------------------------------------------------------------
@contextlib.contextmanager
def gres_only_cluster():
    """The test cluster refusing --gpus (accepting only --gres=gpu:N) inside the block."""
    subprocess.run([str(CLUSTER), "gres-only", "on"], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run([str(CLUSTER), "gres-only", "off"], check=True, capture_output=True)


def test_gres_only_cluster_refuses_gpus_and_accepts_gres(slurm_env):
    """The mode the gres test relies on is real: without this the switched profile could pass
    on a cluster that accepts anything."""
    sbatch = ["sbatch", "--parsable", "--wait", "-p", "gpu", "-o", "/dev/null", "--wrap", "true"]
    with gres_only_cluster():
        refused = subprocess.run([*sbatch, "--gpus=1"], env=slurm_env, capture_output=True, text=True, timeout=60)
        accepted = subprocess.run([*sbatch, "--gres=gpu:1"], env=slurm_env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "only as --gres=gpu:N" in refused.stderr, refused.stderr
    assert accepted.returncode == 0, accepted.stderr


@pytest.fixture(scope="module")
def gres_run(slurm_run, code, env, tmp_path_factory) -> Run:
    """model_0's evaluation path (a batch) and its layer-wise interpolation (a lone GPU job)
    through profiles/slurm with the gres switch applied, on the cluster in gres-only mode, from
    the SLURM run's checkpoints and caches (copied with their mtimes: nothing upstream reruns)."""
    assert slurm_run.returncode == 0, tail(slurm_run)
    profile = code.root / "profiles" / "slurm-gres"
    profile.mkdir(exist_ok=True)
    (profile / "config.yaml").write_text(gres_only_profile((code.root / "profiles" / "slurm" / "config.yaml").read_text()))
    workdir = tmp_path_factory.mktemp("gres")
    shutil.copytree(slurm_run.workdir / "resources", workdir / "resources")
    world = code.ci["world"]
    targets = [f"results/{world}/evaluation/model_0/alpha_{float(a):.3f}.tsv" for a in code.ci["interpolation"]["alphas"]]
    targets.append(f"results/{world}/layerwise_interpolation/model_0.tsv")
    profiles = ["--profile", str(profile), *code.profiles[2:]]
    with gres_only_cluster():
        run = run_snakemake(code, workdir, [*profiles, "--verbose"], env, RUN_TIMEOUT_S, targets=targets)
    print(f"gres-only run: {run.seconds:.0f} s wall, rc={run.returncode}")
    return run


def test_gres_switch_runs_on_a_gres_only_cluster(gres_run, local_run, code, slurm_env):
    assert gres_run.returncode == 0, tail(gres_run)
    subs = submissions(gres_run)
    assert sorted(rule for sub in subs for rule in sub.rules) == ["evaluate_interpolation", "layerwise_interpolation"], subs
    ci = code.ci
    job_mem = ci["compute"]["gpu_job_mem_mb"]
    for sub in subs:
        assert sub.gres == "gpu:1" and sub.gpus is None, f"{sub.jobs}: {sub.options}"
        assert "--ntasks-per-gpu" not in sub.options and sub.partition == "gpu", f"{sub.jobs}: {sub.options}"
        # One after another on the one GPU (gpu_slot), not side by side: one job's memory and
        # threads, the jobs' wall times added up.
        assert sub.options.get("--mem") == str(job_mem), f"{sub.jobs}: {sub.options}"
        assert sub.options.get("--cpus-per-task") == str(ci["compute"]["gpu_job_threads"]), sub.options
    (batch,) = [sub for sub in subs if sub.rules == {"evaluate_interpolation"}]
    assert len(batch.jobs) == len(ci["interpolation"]["alphas"]), batch.jobs
    jobs = slurm_jobs(run_uuid_of(gres_run), slurm_env)
    assert len(jobs) == len(subs) and {f["JobState"] for f in jobs.values()} == {"COMPLETED"}, jobs
    for job_id, fields in jobs.items():
        assert fields.get("TresPerNode") == "gres:gpu:1" and "TresPerJob" not in fields, f"job {job_id}: {fields}"
        given = re.findall(r"'CUDA_VISIBLE_DEVICES': '([^']*)'", Path(fields["StdOut"]).read_text())
        assert len(set(given)) == 1 and given[0] in ("0", "1"), f"job {job_id} ({fields['StdOut']}): GPUs {given}"
    world = ci["world"]
    on_gres, here = result_tables(gres_run, world), result_tables(local_run, world)
    assert on_gres and set(on_gres) <= set(here), sorted(set(on_gres) - set(here))
    differing = [name for name, path in on_gres.items()
                 if not pd.read_csv(path, sep="\t", keep_default_na=False).equals(pd.read_csv(here[name], sep="\t", keep_default_na=False))]
    assert not differing, f"tables differing between the gres-only and the local run: {differing}"
    print(f"gres-only: {len(subs)} submissions, {len(on_gres)} tables equal the local run's")
