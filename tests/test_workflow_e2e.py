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
    "evaluation": (["model", "dataset", "split", "alpha", "metric", "value", "n"], "all"),
    "path_metrics": (["model", "dataset", "split", "instability", "barrier_depth", "gain", "alpha_star", "outcome",
                      "delta", "xi", "tolerance"], "all"),
    "general_sharpness": (["model", "dataset", "alpha", "layer", "metric", "value", "stderr", "n", "n_iter",
                           "n_nonfinite", "rho", "seed"], ["model", "dataset", "alpha", "layer", "metric", "value", "n", "seed"]),
    "layerwise_sharpness": (["model", "dataset", "alpha", "layer", "metric", "value", "stderr", "n", "n_iter",
                             "n_nonfinite", "rho", "mode", "seed"], ["model", "dataset", "alpha", "layer", "metric", "value", "n", "seed"]),
    "layerwise_interpolation": (["model", "dataset", "split", "alpha", "metric", "value", "n", "layer"], "all"),
    "layerwise_instability": (["model", "dataset", "split", "layer", "instability", "instability_at_alpha0", "reference",
                               "reference_loss"], "all"),
    "stragglers": (["model", "dataset", "split", "criterion", "layer", "value", "threshold", "straggler"],
                   ["model", "dataset", "split", "criterion", "layer", "value", "threshold", "straggler"]),
    "pruning": (["model", "dataset", "split", "alpha", "metric", "value", "n", "mask_seed", "n_pruned_layers",
                 "n_pruned_parameters", "n_zeroed"],
                ["model", "dataset", "split", "alpha", "metric", "value", "n", "mask_seed", "n_pruned_layers",
                 "n_pruned_parameters", "n_zeroed"]),
    "pruning_metrics": (["model", "dataset", "split", "mask_seed", "gain", "barrier_depth", "outcome"],
                        ["model", "dataset", "split", "mask_seed", "gain", "barrier_depth", "outcome"]),
    "heldout_gains": (["model", "dataset", "path", "mask_seed", "alpha_star_selection", "outcome_selection",
                       "heldout_gain", "ci_low", "ci_high", "interval_excludes_zero", "heldout_outcome", "n_selection",
                       "n_heldout", "n_boot"],
                      ["model", "dataset", "path", "alpha_star_selection", "heldout_gain", "heldout_outcome"]),
    "summary": (["model", "dataset", "outcome", "gain", "alpha_star", "barrier_depth", "alpha_star_selection",
                 "heldout_gain", "heldout_outcome", "general_sharpness_alpha1", "general_sharpness_alpha_star",
                 "general_sharpness_alpha_star_reason", "min_abs_layerwise_sharpness_alpha1",
                 "min_abs_layerwise_sharpness_alpha_star", "min_abs_layerwise_sharpness_alpha_star_reason",
                 "n_nonfinite_layerwise", "n_nonfinite_general", "stragglers_n_by_sharpness",
                 "stragglers_n_by_interpolation", "n_undecidable_by_sharpness", "n_pruned_layers",
                 "n_pruned_parameters", "pruning_note", "pruned_gain_mean", "pruned_heldout_gain_mean"],
                ["model", "dataset", "outcome", "gain", "alpha_star", "barrier_depth", "alpha_star_selection",
                 "heldout_gain", "heldout_outcome", "general_sharpness_alpha1", "min_abs_layerwise_sharpness_alpha1",
                 "n_nonfinite_layerwise", "stragglers_n_by_sharpness", "n_undecidable_by_sharpness",
                 "n_pruned_layers", "pruned_gain_mean"]),
    "straggler_overlap": (["model", "reference", "configured", "by_interpolation", "by_sharpness", "jaccard"],
                          ["model", "reference", "configured", "jaccard"]),
    "correlations": (["dataset", "x", "claim", "y", "method", "statistic", "p_value", "ci_low", "ci_high", "n",
                      "n_left_out", "left_out", "reason"], ["dataset", "x", "claim", "y", "method", "n", "n_left_out"]),
    "claims": (["claim", "text", "verdict", "evidence"], "all"),
    "reproduction_check": (["endpoint", "model", "alpha", "dataset", "published_pct", "ours_pct", "difference_points",
                            "tolerance_points", "within_tolerance", "status", "n", "n_published", "source", "reason"],
                           ["endpoint", "model", "alpha", "dataset", "ours_pct", "tolerance_points", "status", "n",
                            "reason"]),
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
    main = ci_config["datasets"]["main_ood"]
    evaluation = read(ci_run, "evaluation")
    # Every set as a whole, and the main OOD set's selection and held-out parts.
    assert len(evaluation) == len(models) * len(alphas) * (len(datasets) + 2) * 2
    assert set(evaluation.loc[evaluation["split"] != "all", "dataset"]) == {main}
    assert sorted(evaluation["alpha"].unique()) == alphas
    whole = evaluation[evaluation["split"] == "all"]
    # alpha = 0 is theta_0 for every model: one zero-shot accuracy per dataset.
    zero = whole[(whole["alpha"] == 0) & (whole["metric"] == "accuracy")]
    assert (zero.groupby("dataset")["value"].nunique() == 1).all()
    zero_shot = zero.groupby("dataset")["value"].first()
    # Every path starts at theta_0: each layer-wise path and each pruned path (pruning changes theta_1 only).
    for table in ("layerwise_interpolation", "pruning"):
        rows = read(ci_run, table)
        start = rows[(rows["alpha"] == 0) & (rows["metric"] == "accuracy") & (rows["split"] == "all")]
        assert np.allclose(start["value"], start["dataset"].map(zero_shot)), table
    # The parts partition the set: their image counts add up, and n-weighted accuracies average to the whole.
    parts = evaluation[(evaluation["dataset"] == main) & (evaluation["metric"] == "accuracy")].pivot_table(
        index=["model", "alpha"], columns="split", values=["value", "n"])
    assert (parts[("n", "selection")] + parts[("n", "heldout")] == parts[("n", "all")]).all()
    weighted = (parts[("value", "selection")] * parts[("n", "selection")] + parts[("value", "heldout")] * parts[("n", "heldout")])
    assert np.allclose(weighted / parts[("n", "all")], parts[("value", "all")])

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


def test_summary_columns_are_computed_from_their_sources(ci_run, ci_config):
    """Recompute the summary's computed columns from the tables they come from: min |layer-wise
    sharpness| at alpha 1 and at the selection alpha*, the pruned paths' mean gain, and the
    held-out gain from the per-image scores (alpha* chosen on the selection rows)."""
    main = ci_config["datasets"]["main_ood"]
    summary = read(ci_run, "summary").set_index("model")
    layerwise = read(ci_run, "layerwise_sharpness")
    layerwise = layerwise[layerwise["metric"] == "layerwise_sharpness"]
    pruning_metrics = read(ci_run, "pruning_metrics")
    evaluation = read(ci_run, "evaluation")
    tolerance = ci_config.get("outcome", {}).get("tolerance", 0.001)
    for model, row in summary.iterrows():
        own = layerwise[layerwise["model"] == model]
        assert row["min_abs_layerwise_sharpness_alpha1"] == pytest.approx(own.loc[own["alpha"] == 1.0, "value"].abs().min())
        # alpha* from the selection rows of the evaluation table, by Eq. 2 with the tolerance.
        sel = evaluation[(evaluation["model"] == model) & (evaluation["dataset"] == main) & (evaluation["split"] == "selection")
                         & (evaluation["metric"] == "accuracy")].sort_values("alpha")
        acc = sel["value"].to_numpy()
        alpha_star = 0.0 if acc.max() - acc[0] <= tolerance + 1e-12 else float(sel["alpha"].to_numpy()[np.argmax(acc)])
        assert row["alpha_star_selection"] == pytest.approx(alpha_star)
        if alpha_star == 0.0:
            assert np.isnan(row["min_abs_layerwise_sharpness_alpha_star"]) and "alpha* = 0" in row["min_abs_layerwise_sharpness_alpha_star_reason"]
        else:
            expected = own.loc[np.isclose(own["alpha"], alpha_star), "value"].abs().min()
            assert row["min_abs_layerwise_sharpness_alpha_star"] == pytest.approx(expected)
        held = evaluation[(evaluation["model"] == model) & (evaluation["dataset"] == main) & (evaluation["split"] == "heldout")
                          & (evaluation["metric"] == "accuracy")].set_index("alpha")["value"]
        assert row["heldout_gain"] == pytest.approx(held.loc[alpha_star] - held.loc[0.0])
        pruned = pruning_metrics[(pruning_metrics["model"] == model) & (pruning_metrics["dataset"] == main)
                                 & (pruning_metrics["split"] == "all")]
        assert row["pruned_gain_mean"] == pytest.approx(pruned["gain"].mean())


def test_heldout_gains_agree_with_the_per_image_scores(ci_run, ci_config):
    main = ci_config["datasets"]["main_ood"]
    gains = read(ci_run, "heldout_gains")
    evaluation = read(ci_run, "evaluation")
    for _, row in gains[gains["path"] == "original"].iterrows():
        files = sorted((ci_run / "results/demo/per_image/evaluation" / row["model"]).glob("alpha_*.npz"))
        correct = {float(np.load(f)["alphas"][0]): np.load(f)["correct"][0] for f in files}
        held = evaluation[(evaluation["model"] == row["model"]) & (evaluation["dataset"] == main)
                          & (evaluation["split"] == "heldout") & (evaluation["metric"] == "accuracy")].set_index("alpha")
        n_images = len(correct[0.0])
        assert row["n_selection"] + row["n_heldout"] == n_images
        # The per-image files hold every image: their mean is the whole set's accuracy.
        whole = evaluation[(evaluation["model"] == row["model"]) & (evaluation["dataset"] == main)
                           & (evaluation["split"] == "all") & (evaluation["metric"] == "accuracy")].set_index("alpha")["value"]
        for alpha, bits in correct.items():
            assert bits.mean() == pytest.approx(whole.loc[alpha])
        assert row["acc_heldout_zero_shot"] == pytest.approx(held.loc[0.0, "value"])
        if row["heldout_outcome"] == "failure_mode":
            assert np.isnan(row["ci_low"])
        else:
            assert row["ci_low"] <= row["heldout_gain_vs_best_endpoint"] <= row["ci_high"]


def test_the_ci_world_prunes_a_straggler_and_the_pruned_path_differs(ci_run, ci_config):
    main = ci_config["datasets"]["main_ood"]
    pruning = read(ci_run, "pruning")
    evaluation = read(ci_run, "evaluation")
    pruned_models = sorted(pruning.loc[pruning["n_pruned_layers"] > 0, "model"].unique())
    assert pruned_models, "no model of the CI world had a straggler layer to prune"
    key = ["model", "alpha"]
    for model in pruned_models:
        mine = pruning[(pruning["model"] == model) & (pruning["dataset"] == main) & (pruning["split"] == "all")
                       & (pruning["metric"] == "loss")]
        base = evaluation[(evaluation["model"] == model) & (evaluation["dataset"] == main) & (evaluation["split"] == "all")
                          & (evaluation["metric"] == "loss")].set_index(key)["value"]
        diff = (mine.set_index(key)["value"] - base.reindex(mine.set_index(key).index)).abs()
        at_zero = diff[diff.index.get_level_values("alpha") == 0.0]
        assert (at_zero == 0).all()  # alpha = 0 is theta_0, untouched by pruning theta_1
        assert (diff[diff.index.get_level_values("alpha") > 0] > 1e-6).all(), model
    summary = read(ci_run, "summary").set_index("model")
    for model, row in summary.iterrows():
        assert (row["pruning_note"] == "no straggler: nothing pruned") == (row["n_pruned_layers"] == 0)


def test_claims_and_correlations_name_what_they_test(ci_run):
    claims = read(ci_run, "claims")
    assert list(claims["claim"]) == ["C0", "C1", "C2", "C3", "C4", "C5"]
    assert set(claims["verdict"]) <= {"supports", "does not support", "cannot decide"}
    correlations = read(ci_run, "correlations")
    from interpsharp.claims import MEASURES

    assert set(correlations["x"]) <= {m.column for m in MEASURES} | {c for c in correlations["x"] if "_rho" in c}
    assert not correlations["x"].str.contains("stragglers_n").any()
    assert (correlations["n"] + correlations["n_left_out"] == 3).all()


def test_reproduction_check_says_row_by_row_that_the_demo_world_has_nothing_published(ci_run, ci_config):
    from interpsharp.reproduction import reproduction_rst

    check = read(ci_run, "reproduction_check")
    datasets = [ci_config["datasets"]["id"], *ci_config["datasets"]["ood"]]
    models = len(ci_config["demo"]["finetune"]["recipes"])
    assert len(check) == (1 + models) * len(datasets)
    assert (check["status"] == "no_reference").all()
    assert check["reason"].str.contains("nothing is published").all()
    evaluation = read(ci_run, "evaluation")
    ours = evaluation[(evaluation["metric"] == "accuracy") & (evaluation["alpha"] == 1) & (evaluation["split"] == "all")]
    ours = ours.set_index(["model", "dataset"])["value"]
    finetuned = check[check["endpoint"] == "finetuned"].set_index(["model", "dataset"])
    assert np.allclose(finetuned["ours_pct"], 100 * ours.loc[finetuned.index])
    assert reproduction_rst(check) == ""  # the landing page shows nothing
    assert "reproduction_check.tsv" in (ci_run / "results/demo/report.html").read_text(errors="replace")


def test_report_has_every_figure_and_caption_and_the_results_up_front(ci_run):
    html = (ci_run / "results/demo/report.html").read_text(errors="replace")
    for figure in FIGURES:
        assert f"{figure}.png" in html
    assert "alpha = 0 is the zero-shot model" in html
    # The landing page: the main OOD set's outcome table and a verdict per claim.
    assert "Results on clutter" in html and "What this run says about the paper" in html
    for claim in ("C0", "C1", "C2", "C3", "C4", "C5"):
        assert f"{claim}: " in html


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
    """compute.path_jobs: per_model (the demo's setting) runs a model's whole path, and all of
    its pruned paths, in one process; its files must be the per-alpha and per-seed jobs'
    exactly (same threads, same batches). The model is one the CI world prunes, so the pruned
    paths really differ from the original one."""
    pruning = read(ci_run, "pruning")
    model = sorted(pruning.loc[pruning["n_pruned_layers"] > 0, "model"].unique())[0]
    workdir = tmp_path / "per_model"
    shutil.copytree(ci_run / "resources", workdir / "resources")  # keeps mtimes: nothing upstream reruns
    config = write_config(workdir / "config.yaml", CI_CONFIG, compute={"path_jobs": "per_model"})
    alphas = ci_config["interpolation"]["alphas"]
    seeds = ci_config["pruning"]["mask_seeds"]
    targets = [f"results/demo/{folder}/{model}/alpha_{float(a):.3f}.tsv"
               for folder in ("evaluation", "sharpness/general", "sharpness/layerwise") for a in alphas]
    targets += [f"results/demo/pruning/{model}/seed_{seed}.tsv" for seed in seeds]
    # The targets go first: --configfile takes every argument after it.
    result = snakemake([*targets, "-j2", "--configfile", str(config)], workdir, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    counts = job_counts(result.stdout + result.stderr)
    assert counts == {"evaluate_interpolation": 1, "general_sharpness": 1, "layerwise_sharpness": 1,
                      "layerwise_interpolation": 1, "detect_stragglers": 1, "prune_stragglers": 1, "total": 6}, counts
    assert len(seeds) > 1
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
