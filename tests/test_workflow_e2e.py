"""End to end: the CI-size demo world (config/ci.yaml) through every rule, then the report.

One run (module fixture, ~3-5 min on 2 busy cores) in a temporary working directory feeds
every test here: that each rule ran, that figures are real images, that tables have SPEC's
columns and values where values are expected and agree with each other, that changing a
sharpness setting reruns only what depends on it, and that a failed job leaves no finished-
looking output and a rerun completes it.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import yaml

from test_workflow import ROOT, job_counts, snakemake, write_config

pytestmark = pytest.mark.slow

CI_CONFIG = ROOT / "config" / "ci.yaml"
FIGURES = ["fig1_interpolation", "fig2_layerwise_interpolation", "fig3_general_sharpness",
           "fig4_layerwise_sharpness", "fig5_pruning"]

#: SPEC columns per table, and the columns that must hold a value in every row.
TABLES = {
    "evaluation": (["model", "dataset", "alpha", "metric", "value", "n"], "all"),
    "path_metrics": (["model", "dataset", "instability", "barrier_depth", "gain", "alpha_star", "outcome",
                      "delta", "xi", "tolerance"], "all"),
    "general_sharpness": (["model", "dataset", "alpha", "layer", "metric", "value", "stderr", "n", "n_iter",
                           "rho", "seed"], ["model", "dataset", "alpha", "layer", "metric", "value", "n", "seed"]),
    "layerwise_sharpness": (["model", "dataset", "alpha", "layer", "metric", "value", "stderr", "n", "n_iter",
                             "rho", "mode", "seed"], ["model", "dataset", "alpha", "layer", "metric", "value", "n", "seed"]),
    "layerwise_interpolation": (["model", "dataset", "alpha", "layer", "metric", "value", "n"], "all"),
    "layerwise_instability": (["model", "dataset", "layer", "instability"], "all"),
    "stragglers": (["model", "dataset", "criterion", "layer", "value", "threshold", "straggler"],
                   ["model", "dataset", "criterion", "layer", "value", "threshold", "straggler"]),
    "pruning": (["model", "dataset", "alpha", "metric", "value", "n", "mask_seed", "n_pruned_layers"],
                ["model", "dataset", "alpha", "metric", "value", "n", "mask_seed", "n_pruned_layers"]),
    "pruning_metrics": (["model", "dataset", "mask_seed", "gain", "barrier_depth", "outcome"],
                        ["model", "dataset", "mask_seed", "gain", "barrier_depth", "outcome"]),
    "summary": (["model", "dataset", "outcome", "gain", "alpha_star", "barrier_depth", "general_sharpness_alpha1",
                 "general_sharpness_alpha_star", "min_abs_layerwise_sharpness_alpha1", "stragglers_n_by_sharpness",
                 "stragglers_n_by_interpolation", "pruned_gain_mean"],
                ["model", "dataset", "outcome", "gain", "alpha_star", "barrier_depth", "general_sharpness_alpha1",
                 "general_sharpness_alpha_star", "min_abs_layerwise_sharpness_alpha1", "min_abs_layerwise_sharpness_alpha_star",
                 "stragglers_n_by_sharpness", "stragglers_n_by_interpolation", "pruned_gain_mean"]),
    "correlations": (["dataset", "x", "y", "method", "statistic", "p_value", "ci_low", "ci_high", "n", "reason"],
                     ["dataset", "x", "y", "method", "n"]),
}


@pytest.fixture(scope="module")
def ci_config() -> dict:
    return yaml.safe_load(CI_CONFIG.read_text())


@pytest.fixture(scope="module")
def ci_run() -> Path:
    """Run the whole CI world (ending with the report); yield the working directory.

    A plain temporary directory rather than pytest's numbered ones: pytest sessions started
    meanwhile (other work on the same machine) prune old numbered directories, and this run
    takes minutes."""
    with tempfile.TemporaryDirectory(prefix="interpsharp-ci-world-") as tmp:
        workdir = Path(tmp)
        shutil.copy(CI_CONFIG, workdir / "config.yaml")
        result = snakemake(["-j2", "--configfile", str(workdir / "config.yaml"), "--show-failed-logs"],
                           workdir, timeout=1500)
        assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
        yield workdir


def test_every_rule_of_the_demo_world_ran(ci_run):
    listed = snakemake(["--list-rules", "--configfile", str(ci_run / "config.yaml")], ci_run)
    assert listed.returncode == 0, listed.stderr
    rules = set(listed.stdout.split()) - {"all"}
    assert {"demo_pretrain", "evaluate_interpolation", "layerwise_sharpness", "prune_stragglers"} <= rules
    ran = {p.name for p in (ci_run / "results/demo/benchmarks").iterdir() if any(p.rglob("*.tsv"))}
    assert ran == rules
    # Nothing left to do: every output is there and up to date.
    again = snakemake(["-n", "--configfile", str(ci_run / "config.yaml")], ci_run)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.parametrize("figure", FIGURES)
def test_every_figure_is_a_non_trivial_image(ci_run, figure):
    png = ci_run / "results/demo/figures" / f"{figure}.png"
    pixels = matplotlib.image.imread(png)[..., :3]
    assert pixels.shape[0] >= 300 and pixels.shape[1] >= 400
    ink = (pixels < 0.9).any(axis=-1).mean()  # share of pixels that are not (near) white
    assert 0.02 < ink < 0.9, f"{png}: {ink:.3f} of the pixels carry ink"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, f"{png} has almost no colours"
    pdf = png.with_suffix(".pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5000


def read(ci_run: Path, table: str) -> pd.DataFrame:
    return pd.read_csv(ci_run / "results/demo/tables" / f"{table}.tsv", sep="\t", keep_default_na=False,
                       na_values=["", "nan", "NaN"])


@pytest.mark.parametrize("table", list(TABLES))
def test_every_table_has_the_spec_columns_and_values_where_expected(ci_run, table):
    df = read(ci_run, table)
    columns, filled = TABLES[table]
    assert not df.empty
    assert set(columns) <= set(df.columns), f"{table}: missing {set(columns) - set(df.columns)}"
    filled = columns if filled == "all" else filled
    empty = {c: int(n) for c, n in df[filled].isna().sum().items() if n}
    assert not empty, f"{table}: NaN in {empty}"


def test_sharpness_rows_have_errors_and_radii_where_draws_were_made(ci_run):
    for table in ("general_sharpness", "layerwise_sharpness"):
        df = read(ci_run, table)
        drawn = df[df["metric"] != "loss"]
        assert not drawn[["stderr", "rho", "n_iter"]].isna().any().any(), table
        assert (drawn["n_iter"] > 0).all()


def test_correlations_are_nan_only_with_a_reason(ci_run):
    df = read(ci_run, "correlations")
    missing = df["statistic"].isna()
    assert (df.loc[missing, "reason"].fillna("") != "").all()
    assert df.loc[~missing, "reason"].fillna("").eq("").all()
    assert df.loc[~missing, "statistic"].between(-1, 1).all()


def test_tables_cover_the_configured_grid_and_agree(ci_run, ci_config):
    models = [f"model_{i}" for i in range(len(ci_config["demo"]["finetune"]["recipes"]))]
    alphas = sorted(ci_config["interpolation"]["alphas"])
    datasets = [ci_config["datasets"]["id"], *ci_config["datasets"]["ood"]]
    evaluation = read(ci_run, "evaluation")
    assert len(evaluation) == len(models) * len(alphas) * len(datasets) * 2
    assert sorted(evaluation["alpha"].unique()) == alphas
    # alpha = 0 is theta_0 for every model: one zero-shot accuracy per dataset.
    zero = evaluation[(evaluation["alpha"] == 0) & (evaluation["metric"] == "accuracy")]
    assert (zero.groupby("dataset")["value"].nunique() == 1).all()
    zero_shot = zero.groupby("dataset")["value"].first()
    # Every path starts at theta_0: each layer-wise path and each pruned path (pruning changes theta_1 only).
    for table in ("layerwise_interpolation", "pruning"):
        rows = read(ci_run, table)
        start = rows[(rows["alpha"] == 0) & (rows["metric"] == "accuracy")]
        assert np.allclose(start["value"], start["dataset"].map(zero_shot)), table

    main = ci_config["datasets"]["main_ood"]
    metrics = read(ci_run, "path_metrics").set_index(["model", "dataset"])
    summary = read(ci_run, "summary").set_index("model")
    assert sorted(summary.index) == models and (summary["dataset"] == main).all()
    for model in models:
        assert summary.loc[model, "gain"] == pytest.approx(metrics.loc[(model, main), "gain"])
        assert summary.loc[model, "outcome"] == metrics.loc[(model, main), "outcome"]

    layerwise = read(ci_run, "layerwise_sharpness")
    n_layers = layerwise.loc[layerwise["metric"] == "layerwise_sharpness", "layer"].nunique()
    blocks = json.loads((ROOT / "interpsharp/resources/model_configs/interpsharp-tiny-vit.json").read_text())
    # conv1, class/positional embeddings, ln_pre; 6 per block; ln_post, proj, head
    assert n_layers == 4 + 6 * blocks["vision_cfg"]["layers"] + 3
    per_point = layerwise[layerwise["metric"] == "layerwise_sharpness"].groupby(["model", "alpha"]).size()
    assert (per_point == n_layers).all() and len(per_point) == len(models) * len(alphas)

    stragglers = read(ci_run, "stragglers")
    pruning = read(ci_run, "pruning")
    for model in models:
        flagged = stragglers[(stragglers["model"] == model) & (stragglers["criterion"] == "sharpness")
                             & stragglers["straggler"].astype(str).str.lower().eq("true")]
        assert set(pruning.loc[pruning["model"] == model, "n_pruned_layers"]) == {len(flagged)}
    assert sorted(pruning["mask_seed"].unique()) == ci_config["pruning"]["mask_seeds"]


def test_report_has_every_figure_and_caption(ci_run):
    html = (ci_run / "results/demo/report.html").read_text(errors="replace")
    for figure in FIGURES:
        assert f"{figure}.png" in html
    assert "alpha = 0 is the zero-shot model" in html


def test_provenance_record_covers_the_run_and_every_table(ci_run, ci_config):
    from interpsharp.provenance import code_state, read_sidecar, result_tables, tree_sha256

    results = ci_run / "results" / "demo"
    record = json.loads((results / "provenance.json").read_text())
    assert record["code"]["commit"] == code_state(ROOT)["commit"] and record["repository"] == str(ROOT)
    assert record["config"]["pruning"]["mask_seeds"] == ci_config["pruning"]["mask_seeds"]
    assert record["seeds"]["demo.seed"] == ci_config["demo"]["seed"]
    assert "--configfile" in record["snakemake_command"] and record["config_files"] == [str(ci_run / "config.yaml")]
    models = len(ci_config["demo"]["finetune"]["recipes"])
    assert len(record["checkpoints"]) == 1 + models
    datasets = [ci_config["datasets"]["id"], *ci_config["datasets"]["ood"]]
    assert record["caches"] == {f"resources/demo/caches/{d}": tree_sha256(ci_run / f"resources/demo/caches/{d}") for d in datasets}
    tables = result_tables(results)
    assert len(tables) > 20 and sorted(record["tables"]) == sorted(str(t.relative_to(results)) for t in tables)
    stamps = {read_sidecar(t)["stamp"] for t in tables}
    assert stamps == {record["stamp"]}, "every table of one run is made under the run's stamp"
    assert all(table["current"] for table in record["tables"].values())
    html = (results / "report.html").read_text(errors="replace")
    assert "provenance.html" in html and "provenance.json" in html


def test_provenance_check_names_a_changed_config_value(ci_run):
    from interpsharp.provenance import check

    results = ci_run / "results" / "demo"
    assert check(results)[1] == []
    configfile = ci_run / "config.yaml"
    original = configfile.read_text()
    config = yaml.safe_load(original)
    config["outcome"] = {**config.get("outcome", {}), "xi": 0.2}
    try:
        configfile.write_text(yaml.safe_dump(config))
        findings = check(results, data=False)[1]
    finally:
        configfile.write_text(original)
    assert [(f.area, f.message.split(":")[0]) for f in findings] == [("config", "outcome.xi")], findings


def test_changing_a_sharpness_setting_reruns_only_what_depends_on_it(ci_run, ci_config, tmp_path):
    changed = write_config(tmp_path / "rho.yaml", CI_CONFIG,
                           general_sharpness={"rho": ci_config["general_sharpness"]["rho"] / 2})
    result = snakemake(["-n", "--quiet", "rules", "--configfile", str(changed)], ci_run)
    assert result.returncode == 0, result.stderr[-3000:]
    points = len(ci_config["demo"]["finetune"]["recipes"]) * len(ci_config["interpolation"]["alphas"])
    # The provenance record is remade (after the results it records), and nothing because of it.
    expected = {"general_sharpness": points, "collect_table": 1, "summarize_models": 1, "correlate_sharpness": 1,
                "plot_general_sharpness": 1, "record_provenance": 1, "report_html": 1, "all": 1}
    assert job_counts(result.stdout + result.stderr) == {**expected, "total": sum(expected.values())}


def test_per_model_path_jobs_give_the_per_alpha_jobs_results_to_the_bit(ci_run, ci_config, tmp_path):
    """compute.path_jobs: per_model (the demo's setting) runs a model's whole path in one
    process; its files must be the per-alpha jobs' exactly (same threads, same batches)."""
    workdir = tmp_path / "per_model"
    shutil.copytree(ci_run / "resources", workdir / "resources")  # keeps mtimes: nothing upstream reruns
    config = write_config(workdir / "config.yaml", CI_CONFIG, compute={"path_jobs": "per_model"})
    alphas = ci_config["interpolation"]["alphas"]
    targets = [f"results/demo/{folder}/model_1/alpha_{float(a):.3f}.tsv"
               for folder in ("evaluation", "sharpness/general", "sharpness/layerwise") for a in alphas]
    # The targets go first: --configfile takes every argument after it.
    result = snakemake([*targets, "-j2", "--configfile", str(config)], workdir, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    counts = job_counts(result.stdout + result.stderr)
    assert counts == {"evaluate_interpolation": 1, "general_sharpness": 1, "layerwise_sharpness": 1, "total": 3}
    for target in targets:
        per_model = pd.read_csv(workdir / target, sep="\t", keep_default_na=False)
        per_alpha = pd.read_csv(ci_run / target, sep="\t", keep_default_na=False)
        assert len(per_model) > 0 and per_model.equals(per_alpha), target


def test_a_failed_job_leaves_no_finished_output_and_a_rerun_completes_it(ci_run):
    # Runs last on purpose: it rewrites part of the shared run.
    table = ci_run / "results/demo/tables/path_metrics.tsv"
    first = ci_run / "results/demo/evaluation/model_0/alpha_0.000.tsv"
    good = first.read_text()
    table.unlink()
    first.write_text(re.sub(r"^model\t", "modell\t", good))  # a per-job table missing a column
    # The target goes first: --configfile takes every argument after it.
    failed = snakemake([str(table.relative_to(ci_run)), "-j1", "--configfile", str(ci_run / "config.yaml")], ci_run)
    log = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "Error in rule collect_table" in log, log[-4000:]
    assert not table.exists() and not (ci_run / "results/demo/tables/evaluation.tsv").exists(), log[-4000:]
    first.write_text(good)
    rerun = snakemake([str(table.relative_to(ci_run)), "-j1", "--configfile", str(ci_run / "config.yaml")], ci_run)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert table.exists() and not read(ci_run, "path_metrics").empty
