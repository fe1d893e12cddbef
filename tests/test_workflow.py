"""The Snakemake workflow: lint, the paper world's full DAG without data, bad configs.

Every run uses the repository's Snakefile with a temporary working directory, so nothing is
written into the checkout. Expected job counts are computed from config.yaml, not copied
from a dry run, so a rule that fans out wrongly (or a config key that is ignored) fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"


def snakemake(args: list[str], workdir: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir), *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
    )


def job_counts(output: str) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table (the last one printed) into {rule: count}."""
    tables = output.split("Job stats:")
    assert len(tables) > 1, f"no job stats in the output:\n{output[-3000:]}"
    counts = {}
    for line in tables[-1].splitlines()[3:]:
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if not match:
            break
        counts[match.group(1)] = int(match.group(2))
    return counts


def write_config(path: Path, base: Path, **overrides: dict) -> Path:
    """``base`` with top-level sections updated from ``overrides`` (one level deep)."""
    config = yaml.safe_load(base.read_text())
    for section, values in overrides.items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
        else:
            config[section] = values
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("config", ["config.yaml", "config/demo.yaml", "config/example-custom.yaml"])
def test_lint_has_no_findings(tmp_path, config):
    result = snakemake(["--lint", "--configfile", str(ROOT / config)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_paper_world_dry_run_shows_the_full_dag_without_data(tmp_path):
    result = snakemake(["-n", "--quiet", "rules", "--configfile", str(ROOT / "config.yaml")], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    models = len(config["finetuned"]["models"])
    alphas = len(config["interpolation"]["alphas"])
    datasets = [config["datasets"]["id"], *config["datasets"]["ood"]]
    downloaded = sum("url" in config["datasets"]["sources"][d] for d in datasets)
    seeds = len(config["pruning"]["mask_seeds"])
    expected = {
        "download_finetuned": models,
        "build_zeroshot_classifier": 1,
        "id_classes": 1,
        "download_dataset": downloaded,
        "unpack_dataset": downloaded,
        "build_cache": len(datasets),
        "evaluate_interpolation": models * alphas,
        "general_sharpness": models * alphas,
        "layerwise_sharpness": models * alphas,
        "layerwise_interpolation": models,
        "detect_stragglers": models,
        "prune_stragglers": models * seeds,
        "collect_table": 6,
        "path_metrics": 1,
        "pruning_metrics": 1,
        "heldout_gains": 1,
        "layerwise_instability": 1,
        "summarize_models": 1,
        "correlate_sharpness": 1,
        "check_reproduction": 1,
        "plot_interpolation_paths": 1,
        "plot_layerwise_interpolation": 1,
        "plot_general_sharpness": 1,
        "plot_layerwise_sharpness": 1,
        "plot_pruning": 1,
        "record_provenance": 1,
        "report_html": 1,
        "all": 1,
    }
    assert job_counts(result.stdout + result.stderr) == {**expected, "total": sum(expected.values())}
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()
    # ObjectNet is the paper world's fifth shift, cached from the folder the user provides.
    assert "objectnet" in datasets and config["datasets"]["sources"]["objectnet"]["layout"] == "objectnet"
    assert len(datasets) == 6


def test_demo_profile_plans_the_demo_world(tmp_path):
    """`make demo` runs `snakemake --profile profiles/demo`: its config must give the demo DAG."""
    result = snakemake(["--profile", "profiles/demo", "-n", "--quiet", "rules"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    counts = job_counts(result.stdout + result.stderr)
    models = len(config["demo"]["finetune"]["recipes"])
    assert config["compute"]["path_jobs"] == "per_model", "the demo runs each model's path in one job"
    assert counts["demo_images"] == 1 + len(config["datasets"]["ood"])
    assert counts["demo_finetune"] == models and counts["demo_pretrain"] == 1
    assert counts["evaluate_interpolation"] == counts["general_sharpness"] == counts["layerwise_sharpness"] == models
    assert counts["prune_stragglers"] == models  # every mask seed of a model in one job
    assert not {"download_finetuned", "download_dataset", "build_cache"} & set(counts)


def job_inputs(output: str, rule: str) -> list[str]:
    """The input lines of every planned job of ``rule`` in a (non-quiet) dry run's output."""
    return re.findall(rf"rule {rule}:\n\s+input: ([^\n]+)", output)


def test_demo_detection_reads_the_sweep_where_the_draws_are_the_same(tmp_path):
    """The demo's straggler detection draws what its layer-wise sharpness sweep draws, so it
    reads the sweep's alpha = 1 file (rules/common.smk straggler_sweep_point); the paper world
    draws 5 times for detection and 20 for the sweep, so it does not."""
    demo = snakemake(["--profile", "profiles/demo", "-n"], tmp_path / "demo")
    assert demo.returncode == 0, demo.stderr[-3000:]
    detections = job_inputs(demo.stdout + demo.stderr, "detect_stragglers")
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    assert len(detections) == len(config["demo"]["finetune"]["recipes"])
    for inputs in detections:
        model = re.search(r"checkpoints/(model_\d+)\.pt", inputs).group(1)
        assert f"results/demo/sharpness/layerwise/{model}/alpha_1.000.tsv" in inputs, inputs
    paper = snakemake(["-n", "--configfile", str(ROOT / "config.yaml")], tmp_path / "paper")
    assert paper.returncode == 0, paper.stderr[-3000:]
    detections = job_inputs(paper.stdout + paper.stderr, "detect_stragglers")
    assert len(detections) == len(yaml.safe_load((ROOT / "config.yaml").read_text())["finetuned"]["models"])
    assert not any("sharpness/layerwise" in inputs for inputs in detections)


def test_demo_full_overlays_the_denser_settings(tmp_path):
    """config/demo-full.yaml on top of config/demo.yaml: the same DAG with every alpha in
    steps of 0.1 and the larger main OOD set."""
    overlay = yaml.safe_load((ROOT / "config" / "demo-full.yaml").read_text())
    demo = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    result = snakemake(["--profile", "profiles/demo", "-n", "--configfile", str(ROOT / "config" / "demo.yaml"),
                        str(ROOT / "config" / "demo-full.yaml")], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert len(overlay["interpolation"]["alphas"]) > len(demo["interpolation"]["alphas"])
    for alpha in overlay["interpolation"]["alphas"]:
        assert f"results/demo/evaluation/model_0/alpha_{alpha:.3f}.tsv" in output, alpha
    assert overlay["demo"]["set_images"]["clutter"] > demo["demo"]["set_images"]["clutter"]


def test_per_model_path_jobs_write_every_point_and_ask_for_their_summed_wall_time(tmp_path):
    """compute.path_jobs: per_model cuts the same per-(model, alpha) and per-(model, mask seed)
    files into one job per model."""
    from snakemake.utils import validate
    from snakemake_dryrun import job_resources

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    validate(config, str(ROOT / "workflow_schemas" / "config.schema.yaml"))  # fills the runtime defaults
    per_model = write_config(tmp_path / "per_model.yaml", ROOT / "config.yaml", compute={"path_jobs": "per_model"})
    result = snakemake(["-n", "--configfile", str(per_model)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    models, alphas = config["finetuned"]["models"], config["interpolation"]["alphas"]
    runtime = config["compute"]["runtime"]
    jobs = job_resources(output)
    for rule, kind, folder in (("evaluate_interpolation", "evaluate", "evaluation"),
                               ("general_sharpness", "general_sharpness", "sharpness/general"),
                               ("layerwise_sharpness", "layerwise_sharpness", "sharpness/layerwise")):
        assert len(jobs[rule]) == len(models), rule
        assert {int(job["runtime"]) for job in jobs[rule]} == {runtime[kind] * len(alphas)}, rule
        for i in models:
            for alpha in alphas:
                assert f"results/paper/{folder}/model_{i}/alpha_{alpha:.3f}.tsv" in output, (rule, i, alpha)
    seeds = config["pruning"]["mask_seeds"]
    assert len(jobs["prune_stragglers"]) == len(models) and len(seeds) > 1
    assert {int(job["runtime"]) for job in jobs["prune_stragglers"]} == {runtime["pruning"] * len(seeds)}
    for i in models:
        for seed in seeds:
            assert f"results/paper/pruning/model_{i}/seed_{seed}.tsv" in output, (i, seed)
    assert job_counts(output)["collect_table"] == 6  # downstream is untouched


def test_paper_world_run_stops_before_any_job_when_user_data_is_missing(tmp_path):
    result = snakemake(["-j1", "--configfile", str(ROOT / "config.yaml")], tmp_path)
    assert result.returncode != 0
    assert "datasets.sources.imagenet.path" in result.stderr
    assert "datasets.sources.imagenet-sketch.path" in result.stderr
    assert "datasets.sources.objectnet.path" in result.stderr and "https://objectnet.dev/download.html" in result.stderr
    assert not (tmp_path / "resources").exists(), "a job ran although the run should have stopped first"


@pytest.mark.parametrize(
    "overrides, key, allowed",
    [
        ({"layerwise_sharpness": {"mode": "perturb_everything"}}, "layerwise_sharpness.mode",
         "['perturb_finetuned', 'perturb_interpolated']"),
        ({"general_sharpness": {"rhoo": 1.0}}, "general_sharpness", "'rhoo' was unexpected"),
        ({"general_sharpness": {"rho": -1.0}}, "general_sharpness.rho", "less than or equal to the minimum of 0"),
        ({"datasets": {"main_ood": "imagenet"}}, "datasets.main_ood", "['imagenet-a', 'imagenet-r'"),
        ({"interpolation": {"alphas": [0.0, 0.5]}}, "interpolation.alphas", "both endpoints 0 and 1"),
        ({"finetuned": {"models": [1, 2], "checkpoints": {"mine": {"path": "mine.pt"}}}}, "finetuned.checkpoints",
         "cannot be combined with finetuned.models"),
        ({"finetuned": {"checkpoints": {"bad name": {"path": "x.pt"}}}}, "finetuned.checkpoints", "does not match"),
        ({"finetuned": {"checkpoints": {"both": {"path": "x.pt", "url": "http://x/y.pt"}}}}, "finetuned.checkpoints.both",
         "is not valid under any of the given schemas"),
        ({"datasets": {"image_size": 336}}, "datasets.image_size", "ViT-B-32-quickgelu takes 224 px images"),
        ({"zeroshot": {"model_config": "elsewhere/my-vit.json"}}, "zeroshot.model_name", "must be 'my-vit'"),
        ({"layerwise_interpolation": {"alphas": [0.0, 0.33, 1.0]}}, "layerwise_interpolation.alphas",
         "not among points of interpolation.alphas"),
        ({"layerwise_interpolation": {"alphas": [0.0, 0.5]}}, "layerwise_interpolation.alphas", "both endpoints 0 and 1"),
    ],
)
def test_bad_config_value_stops_before_any_job_naming_key_and_allowed_values(tmp_path, overrides, key, allowed):
    config = write_config(tmp_path / "bad.yaml", ROOT / "config.yaml", **overrides)
    result = snakemake(["-j1", "--configfile", str(config)], tmp_path)
    assert result.returncode != 0
    assert f"invalid config: '{key}'" in result.stderr, result.stderr[-2000:]
    assert allowed in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


def test_imagefolder_keys_are_refused_on_layouts_with_fixed_classes(tmp_path):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["datasets"]["sources"]["imagenet-a"]["subset"] = True
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(["-n", "--configfile", str(tmp_path / "bad.yaml")], tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert ("invalid config: 'datasets.sources.imagenet-a': subset apply to layout 'imagefolder' only; 'imagenet-a' has "
            "its classes fixed") in output, output[-2000:]


def test_the_example_custom_config_plans_the_custom_world(tmp_path):
    """config/example-custom.yaml as shipped (its files stood in by empty ones: a dry run reads
    nothing): your checkpoint files are imported, your folders cached, nothing downloaded."""
    config = yaml.safe_load((ROOT / "config/example-custom.yaml").read_text())
    for entry in config["finetuned"]["checkpoints"].values():
        (tmp_path / entry["path"]).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / entry["path"]).write_bytes(b"")
    result = snakemake(["-n", "--quiet", "rules", "--configfile", str(ROOT / "config/example-custom.yaml")], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout + result.stderr)
    models, alphas = len(config["finetuned"]["checkpoints"]), 21
    assert counts["import_finetuned"] == models and counts["build_cache"] == 1 + len(config["datasets"]["ood"])
    assert counts["evaluate_interpolation"] == models * alphas and counts["id_classes"] == 1
    assert not {"download_finetuned", "download_dataset", "unpack_dataset"} & set(counts)


def test_paper_config_spells_out_exactly_the_schema_defaults():
    """config.yaml claims every value equals the schema default (config/demo.yaml relies on it:
    Snakemake lays it over config.yaml), and every schema field must have a default."""
    from snakemake.utils import validate

    schema = str(ROOT / "workflow_schemas" / "config.schema.yaml")
    defaults: dict = {}
    validate(defaults, schema)
    paper = yaml.safe_load((ROOT / "config.yaml").read_text())
    validate(paper, schema)
    paper.pop("demo")  # the demo world's section: config.yaml leaves it to the schema
    defaults.pop("demo")
    assert paper == defaults
