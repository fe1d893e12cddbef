"""The GPU cost estimate: its arithmetic by hand on a tiny config, its layer fractions from the
real layer list, the paper-world order of magnitude SPEC states, its config defaults, and hours at
measured throughputs (a file the GPU acceptance run writes)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from interpsharp.cli import main
from interpsharp.estimate import (
    CONFIG_DEFAULTS,
    SPEC_THROUGHPUTS,
    THROUGHPUTS_FORMAT,
    Throughputs,
    cost_inputs_from_config,
    estimate_by_precision,
    estimate_cost,
    hours_against_spec,
    prefix_fraction,
    read_throughputs,
    vit_layer_fractions,
    write_throughputs,
)

REPO = Path(__file__).resolve().parents[1]

TINY_CONFIG = {
    "finetuned": {"models": [3, 5]},
    "datasets": {"id": "a", "ood": ["b"], "main_ood": "b", "limit": None},
    "interpolation": {"alphas": [0.0, 0.5, 1.0]},
    "general_sharpness": {"rho_sweep": [0.5], "n_iter": 4, "n_samples": 10},
    "layerwise_sharpness": {"n_iter": 2, "n_samples": None},
    "layerwise_interpolation": {"datasets": None},
    "stragglers": {"n_iter": 3, "n_samples": 5},
    "pruning": {"mask_seeds": [0, 1], "datasets": None},
}
TINY_SIZES = {"a": 100, "b": 30}


def test_tiny_config_by_hand(tiny_clip_name):
    config = {**TINY_CONFIG, "zeroshot": {"model_name": tiny_clip_name}}
    inputs = cost_inputs_from_config(config, dataset_sizes=TINY_SIZES)
    # Tiny model: 2 blocks -> 4 stem + 2 x 6 block + ln_post, proj, head = 19 layers. Prefix
    # fractions: stem 1, block 0 1, block 1 1/2, tail 0 -> sum 4 + 6 + 3 = 13.
    assert inputs.layers == 19 and sum(inputs.layer_fractions) == pytest.approx(13)

    table = estimate_cost(config, throughput_images_per_s=1000.0, gflops_per_image=2.0, dataset_sizes=TINY_SIZES)
    rows = table.set_index("rule")
    # Written out from the definitions: models 2, alphas 3, eval images 100 + 30.
    expected = {
        "evaluation": (2 * 3 * 130, 2 * 3 * 130),
        "layerwise_interpolation": (2 * 19 * 3 * 30, 2 * 30 * (1 + 2 * 13)),  # 3420, 1620 (alpha 0 shared)
        "general_sharpness": (2 * 3 * 10 * (1 + 4 * 2), 2 * 3 * 10 * (1 + 4 * 2)),  # 2 radii x 4 draws
        "layerwise_sharpness": (2 * 3 * 30 * (1 + 19 * 2), 2 * 3 * 30 * (1 + 2 * 13)),  # 7020, 4860
        "stragglers": (2 * 5 * (1 + 19 * 3), 2 * 5 * (1 + 3 * 13)),  # 580, 400
        "pruning": (2 * 2 * 3 * 130, 2 * 2 * 3 * 130),
    }
    for rule, (naive, cached) in expected.items():
        assert rows.loc[rule, "forwards_naive"] == pytest.approx(naive), rule
        assert rows.loc[rule, "forwards_cached"] == pytest.approx(cached), rule
    assert rows.loc["total", "forwards_naive"] == pytest.approx(13900)
    assert rows.loc["total", "forwards_cached"] == pytest.approx(9760)
    assert rows.loc["total", "gpu_hours_naive"] == pytest.approx(13900 / 1000 / 3600)
    assert rows.loc["total", "pflop_cached"] == pytest.approx(9760 * 2.0e9 / 1e15)


def test_a_coarser_layerwise_interpolation_grid_prices_only_that_sweep(tiny_clip_name):
    base = {**TINY_CONFIG, "zeroshot": {"model_name": tiny_clip_name}, "interpolation": {"alphas": [0.0, 0.25, 0.5, 0.75, 1.0]}}
    coarse = {**base, "layerwise_interpolation": {"datasets": None, "alphas": [0.0, 0.5, 1.0]}}
    full, cheap = (estimate_cost(c, throughput_images_per_s=1000.0, gflops_per_image=2.0, dataset_sizes=TINY_SIZES)
                   .set_index("rule") for c in (base, coarse))
    # 2 models x 30 images: 3 points instead of 5 on the layer-wise sweep, nothing else moves.
    assert cheap.loc["layerwise_interpolation", "forwards_naive"] == 2 * 19 * 3 * 30
    assert cheap.loc["layerwise_interpolation", "forwards_cached"] == 2 * 30 * (1 + 2 * 13)
    assert full.loc["layerwise_interpolation", "forwards_cached"] == 2 * 30 * (1 + 4 * 13)
    others = [r for r in full.index if r not in ("layerwise_interpolation", "total")]
    pd.testing.assert_frame_equal(full.loc[others], cheap.loc[others])


def test_limit_and_subsets_cap_image_counts(tiny_clip_name):
    config = {**TINY_CONFIG, "zeroshot": {"model_name": tiny_clip_name}, "datasets": {**TINY_CONFIG["datasets"], "limit": 20}}
    inputs = cost_inputs_from_config(config, dataset_sizes=TINY_SIZES)
    assert inputs.eval_images == 40  # both sets capped at 20
    assert inputs.general_sharpness_images == 10  # n_samples below the cap
    assert inputs.layerwise_sharpness_images == 20 and inputs.straggler_images == 5


def test_prefix_fractions_follow_the_stage_of_each_layer():
    assert [prefix_fraction(s, 12) for s in (0, 1, 2, 12, 13, 14, 16)] == [1, 1, 11 / 12, 1 / 12, 0, 0, 0]
    fractions = vit_layer_fractions("ViT-B-32-quickgelu")
    assert len(fractions) == 79
    # SPEC: 4 stem groups at a full forward, block k at (12 - k) / 12, ln_post/proj/head ~0.
    expected = [1.0] * 4 + [(12 - k) / 12 for k in range(12) for _ in range(6)] + [0.0] * 3
    assert fractions == pytest.approx(expected)
    assert sum(fractions) / 78 == pytest.approx(0.55, abs=0.01)  # SPEC's FLOP floor of the 78 tower layers


def test_paper_world_order_of_magnitude():
    """SPEC: about 150 H100-hours naive fp32 at the paper's settings, dominated by layer-wise
    sharpness (rho 1 only, one pruning mask here, as in the paper)."""
    paper = {"general_sharpness": {"rho_sweep": []}, "pruning": {"mask_seeds": [0]}}
    table = estimate_by_precision(paper).set_index("rule")
    total = table.loc["total", "hours_naive_fp32"]
    assert 100 < total < 200
    assert table.loc["layerwise_sharpness", "hours_naive_fp32"] > 0.8 * total
    # 9 x 21 x 7500 x (1 + 79 x 20) forwards at 4.4k images/s.
    assert table.loc["layerwise_sharpness", "hours_naive_fp32"] == pytest.approx(9 * 21 * 7500 * 1581 / 4400 / 3600)
    cached_bf16 = table.loc["total", "hours_cached_bf16"]
    assert cached_bf16 < total / 8
    # As configured, each rule runs at its own precision's throughput.
    configured = sum(
        table.loc[rule, "forwards_cached"] / SPEC_THROUGHPUTS[table.loc[rule, "precision"]] / 3600
        for rule in table.index
        if rule != "total"
    )
    assert table.loc["total", "hours_configured"] == pytest.approx(configured)


def test_config_errors_name_the_key():
    with pytest.raises(KeyError, match="'objectnet-v2'"):
        cost_inputs_from_config({"datasets": {"ood": ["objectnet-v2"]}}, layer_fractions=[1.0])
    with pytest.raises(ValueError, match="demo"):
        cost_inputs_from_config({"world": "demo"}, layer_fractions=[1.0])
    with pytest.raises(KeyError, match="zeroshot.model_name"):
        cost_inputs_from_config({"zeroshot": {"model_name": "no-such-model"}})
    with pytest.raises(ValueError, match="throughput"):
        estimate_cost({}, 0.0, layer_fractions=[1.0])


def _schema_default(schema: dict, section: str, key: str | None):
    node = schema["properties"][section]
    return node["default"] if key is None else node["properties"][key]["default"]


def test_defaults_match_the_workflow_schema():
    """The estimator fills missing keys like Snakemake's validation does; the two must agree."""
    path = REPO / "workflow_schemas" / "config.schema.yaml"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    schema = yaml.safe_load(path.read_text())
    for section, value in CONFIG_DEFAULTS.items():
        if not isinstance(value, dict):
            assert _schema_default(schema, section, None) == value, section
            continue
        for key, default in value.items():
            assert _schema_default(schema, section, key) == pytest.approx(default), f"{section}.{key}"


def test_repository_config_estimates(capsys):
    """The paper config the workflow ships must be readable by the estimator."""
    path = REPO / "config.yaml"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    assert main(["estimate", "--config", str(path), "--precision", "bf16"]) == 0
    out = capsys.readouterr().out
    assert "26,100 images/s" in out and "layerwise_sharpness" in out and "total" in out


# -- measured throughputs (interpsharp estimate --throughputs) ---------------------------------

def _measured(path: Path, rates: dict) -> Path:
    write_throughputs(path, Throughputs(rates, device="Test GPU", measured="2026-11-30", source="test"))
    return path


def test_throughputs_file_round_trips_and_rejects_malformed_files(tmp_path):
    path = _measured(tmp_path / "t.json", {"fp32": 1000.0, "bf16": 5000})
    back = read_throughputs(path)
    assert back.images_per_s == {"fp32": 1000.0, "bf16": 5000.0} and back.device == "Test GPU"
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        read_throughputs(tmp_path / "nothere.json")
    (tmp_path / "foreign.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="foreign.json.*something-else"):
        read_throughputs(tmp_path / "foreign.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="broken.json"):
        read_throughputs(tmp_path / "broken.json")
    for rate in (0, -3, "fast", float("inf"), True):
        record = {"format": THROUGHPUTS_FORMAT, "images_per_s": {"fp32": 1.0, "bf16": rate}}
        (tmp_path / "bad.json").write_text(json.dumps(record))
        with pytest.raises(ValueError, match="bad.json.*'bf16'"):
            read_throughputs(tmp_path / "bad.json")


def test_hours_scale_inversely_with_the_measured_throughputs():
    """A GPU measured exactly twice as fast as SPEC's H100 at every precision takes half the hours."""
    paper = {"general_sharpness": {"rho_sweep": []}}
    double = {name: 2 * rate for name, rate in SPEC_THROUGHPUTS.items()}
    table = hours_against_spec(paper, double).set_index("rule")
    for kind in ("naive_fp32", "cached_bf16", "configured"):
        assert table[f"hours_{kind}_measured"].to_numpy() == pytest.approx(table[f"hours_{kind}_spec"].to_numpy() / 2)
    # And the columns are what estimate_by_precision says at SPEC's rates.
    reference = estimate_by_precision(paper).set_index("rule")
    assert table["hours_naive_fp32_spec"].to_numpy() == pytest.approx(reference["hours_naive_fp32"].to_numpy())
    assert table["hours_configured_spec"].to_numpy() == pytest.approx(reference["hours_configured"].to_numpy())
    # Only bf16 slower: the fp32 columns stay, bf16 rules' configured hours grow (the defaults
    # are fp32 everywhere, so evaluation is switched to bf16 here).
    bf16_evaluation = {**paper, "evaluation": {"precision": "bf16"}}
    slow_bf16 = hours_against_spec(bf16_evaluation, {**SPEC_THROUGHPUTS, "bf16": SPEC_THROUGHPUTS["bf16"] / 4}).set_index("rule")
    assert slow_bf16["hours_naive_fp32_measured"].to_numpy() == pytest.approx(table["hours_naive_fp32_spec"].to_numpy())
    assert slow_bf16.loc["evaluation", "hours_configured_measured"] == pytest.approx(
        4 * slow_bf16.loc["evaluation", "hours_configured_spec"])
    with pytest.raises(KeyError, match="bf16"):
        hours_against_spec(paper, {"fp32": 1000.0})


def test_cli_prices_the_paper_world_at_measured_throughputs(tmp_path, capsys):
    path = REPO / "config.yaml"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    measured = _measured(tmp_path / "t.json", {"fp32": 8800.0, "bf16": 52200.0, "bf16+compile": 62600.0})
    assert main(["estimate", "--config", str(path), "--throughputs", str(measured)]) == 0
    out = capsys.readouterr().out
    assert "Test GPU" in out and "8,800" in out and "4,400" in out and "hours_configured_spec" in out
    assert main(["estimate", "--config", str(path), "--throughputs", str(_measured(tmp_path / "f.json", {"fp32": 1.0}))]) == 2
    assert "f.json" in capsys.readouterr().err


def test_objectnet_is_priced_in_the_paper_world_and_custom_worlds_count_their_checkpoints(capsys):
    paper = cost_inputs_from_config({}, layer_fractions=[1.0])
    assert paper.eval_images == 50000 + 7500 + 30000 + 50889 + 10000 + 18574
    custom = {"world": "custom", "finetuned": {"checkpoints": {"a": {"path": "a.pt"}, "b": {"path": "b.pt"}, "c": {"path": "c.pt"}}},
              "datasets": {"id": "mine", "ood": ["shifted"], "main_ood": "shifted"}}
    inputs = cost_inputs_from_config(custom, dataset_sizes={"mine": 1000, "shifted": 300}, layer_fractions=[1.0])
    assert inputs.models == 3 and inputs.eval_images == 1300
    with pytest.raises(KeyError, match="dataset 'mine': size unknown"):
        cost_inputs_from_config(custom, layer_fractions=[1.0])
    with pytest.raises(ValueError, match="demo world runs on a CPU"):
        cost_inputs_from_config({"world": "demo"}, layer_fractions=[1.0])


def test_estimate_cli_takes_the_sizes_of_your_own_sets(tmp_path, capsys):
    config = tmp_path / "custom.yaml"
    config.write_text(yaml.safe_dump({"world": "custom", "zeroshot": {"model_name": "ViT-B-16"},
                                      "finetuned": {"checkpoints": {"a": {"path": "a.pt"}, "b": {"path": "b.pt"}}},
                                      "datasets": {"id": "mine", "ood": ["shifted"], "main_ood": "shifted"}}))
    assert main(["estimate", "--config", str(config), "--dataset-size", "mine=1000", "--dataset-size", "shifted=300",
                 "--precision", "bf16"]) == 0
    assert "total" in capsys.readouterr().out
    assert main(["estimate", "--config", str(config), "--dataset-size", "mine"]) == 2
