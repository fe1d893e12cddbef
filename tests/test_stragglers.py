"""Stragglers by sharpness, Algorithm 1 pruning, overlap of the two criteria, ``interpsharp prune``."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from conftest import tiny_classifier
from interpsharp.checkpoints import load_classifier, save_classifier
from interpsharp.cli import main
from interpsharp.layers import layer_groups
from interpsharp.pruning import prune_stragglers
from interpsharp.stragglers import straggler_layers, straggler_overlap, stragglers_by_sharpness


def layerwise_table(values: dict[str, float], alpha: float = 1.0, model: str = "m", rho: float = 1.0,
                    stderr: dict[str, float] | float = 0.01) -> pd.DataFrame:
    errors = stderr if isinstance(stderr, dict) else {layer: stderr for layer in values}
    rows = [dict(model=model, dataset="d", alpha=alpha, layer=layer, metric="layerwise_sharpness", value=v,
                 stderr=errors[layer], mode="perturb_finetuned", rho=rho) for layer, v in values.items()]
    rows.append(dict(model=model, dataset="d", alpha=alpha, layer="all", metric="loss", value=0.0, stderr=math.nan,
                     mode="perturb_finetuned", rho=rho))
    return pd.DataFrame(rows)


# -- detection ---------------------------------------------------------------------------------

def test_stragglers_by_sharpness_thresholds():
    values = {"a": 2.0, "b": 0.0005, "c": 0.015, "d": -0.0001, "e": -0.5, "f": math.nan}
    table = pd.concat([layerwise_table(values), layerwise_table({k: 10 * v for k, v in values.items()}, alpha=0.5)])
    absolute = stragglers_by_sharpness(table, eps=0.001, eps_rel=0.0)
    assert list(absolute["layer"]) == list(values)  # loss rows and other alphas are left out, order kept
    assert list(absolute.loc[absolute["straggler"], "layer"]) == ["b", "d"]
    relative = stragglers_by_sharpness(table, eps=0.001, eps_rel=0.01)  # 0.01 * 2.0 = 0.02 > 0.001
    assert relative["threshold"].iloc[0] == pytest.approx(0.02)
    assert list(relative.loc[relative["straggler"], "layer"]) == ["b", "c", "d"]
    at_half = stragglers_by_sharpness(table, eps=0.001, eps_rel=0.0, alpha=0.5)
    assert list(at_half.loc[at_half["straggler"], "layer"]) == ["d"]
    with pytest.raises(ValueError, match="alphas"):
        stragglers_by_sharpness(table, 0.001, 0.0, alpha=0.25)


def test_a_straggler_must_be_consistent_with_zero_and_undecidable_layers_are_counted():
    # threshold 0.001, k = 2:
    #   tiny:     |S| 0.0002, SE 0.0002 -> within 2 SE of 0 and under the threshold: straggler;
    #             interval [-0.0002, 0.0006] lies under the threshold: decided.
    #   precise:  |S| 0.0008, SE 0.0001 -> under the threshold but 8 SE from 0: not flagged;
    #             interval [0.0006, 0.001] touches the threshold only: decided.
    #   noisy:    |S| 0.0005, SE 0.002 -> flagged, but [-0.0035, 0.0045] straddles 0.001: undecidable.
    #   big:      |S| 0.5, SE 0.002 -> not flagged, decided.
    #   unknown:  one draw, SE NaN -> never flagged, undecidable.
    values = {"tiny": 0.0002, "precise": -0.0008, "noisy": 0.0005, "big": 0.5, "unknown": 0.0}
    errors = {"tiny": 0.0002, "precise": 0.0001, "noisy": 0.002, "big": 0.002, "unknown": math.nan}
    out = stragglers_by_sharpness(layerwise_table(values, stderr=errors), eps=0.001, eps_rel=0.0, k=2.0).set_index("layer")
    assert list(out.index[out["straggler"]]) == ["tiny", "noisy"]
    assert list(out.index[out["undecidable"]]) == ["noisy", "unknown"]
    assert (out["k"] == 2.0).all()
    # A larger k admits the precise layer (8 SE from 0) once k >= 8.
    wide = stragglers_by_sharpness(layerwise_table(values, stderr=errors), eps=0.001, eps_rel=0.0, k=8.0)
    assert "precise" in set(wide.loc[wide["straggler"], "layer"])
    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="k \\(standard errors\\)"):
            stragglers_by_sharpness(layerwise_table(values), 0.001, 0.0, k=bad)
    with pytest.raises(ValueError, match="stderr"):
        stragglers_by_sharpness(layerwise_table(values).drop(columns="stderr"), 0.001, 0.0)


def test_stragglers_by_sharpness_thresholds_are_per_model():
    table = pd.concat([layerwise_table({"a": 1.0, "b": 0.05}, model="flat", stderr=0.05),
                       layerwise_table({"a": 100.0, "b": 0.05}, model="sharp", stderr=0.05)])
    result = stragglers_by_sharpness(table, eps=0.0, eps_rel=0.01)
    flagged = result.loc[result["straggler"], ["model", "layer"]].values.tolist()
    assert flagged == [["sharp", "b"]]


def test_straggler_layers_reads_both_table_kinds():
    by_sharpness = stragglers_by_sharpness(layerwise_table({"a": 1.0, "b": 0.0}), eps=0.001, eps_rel=0.0)
    assert straggler_layers(by_sharpness) == ["b"]
    by_interpolation = pd.DataFrame({"model": ["m", "m", "n"], "dataset": "d", "layer": ["x", "y", "z"], "instability": [0.3, 0.2, 0.5]})
    assert straggler_layers(by_interpolation, model="m") == ["x", "y"]
    with pytest.raises(ValueError, match="several models"):
        straggler_layers(by_interpolation)
    mixed = pd.DataFrame({"layer": ["x", "y"], "criterion": ["sharpness", "interpolation"], "straggler": ["True", "True"]})
    assert straggler_layers(mixed, criterion="interpolation") == ["y"]


# -- pruning -----------------------------------------------------------------------------------

def test_pruning_touches_only_straggler_layers_and_about_half_their_elements():
    model = tiny_classifier(0)
    state, groups = model.state_dict(), layer_groups(model)
    stragglers = ["visual.transformer.resblocks.0.mlp.c_fc", "classification_head"]
    pruned, summary = prune_stragglers(state, groups, stragglers, seed=0)
    straggler_params = {n for layer in stragglers for n in groups[layer]}
    for name, tensor in state.items():
        if name not in straggler_params:
            assert pruned[name] is tensor
    for row in summary.itertuples():
        names = groups[row.layer]
        before = torch.cat([state[n].reshape(-1) for n in names])
        after = torch.cat([pruned[n].reshape(-1) for n in names])
        assert int((before != 0).sum()) == before.numel()  # random init: no zeros to begin with
        zeroed = int((after == 0).sum())
        assert zeroed == row.zeroed and row.numel == before.numel()
        kept = after != 0
        assert torch.equal(after[kept], before[kept])  # the rest is untouched
        # Binomial(n, 1/2): mean n/2, standard deviation sqrt(n)/2; 5 sigma.
        assert abs(zeroed - row.numel / 2) <= 5 * math.sqrt(row.numel) / 2
    assert list(summary["layer"]) == stragglers and (summary["seed"] == 0).all()
    assert all(torch.equal(state[n], model.state_dict()[n]) for n in state)  # input not modified


def test_masks_are_seeded_and_independent_of_other_stragglers():
    model = tiny_classifier(0)
    state, groups = model.state_dict(), layer_groups(model)
    layer = "visual.transformer.resblocks.1.attn"
    names = groups[layer]
    first, _ = prune_stragglers(state, groups, [layer], seed=3)
    again, _ = prune_stragglers(state, groups, ["visual.proj", layer], seed=3)
    other, _ = prune_stragglers(state, groups, [layer], seed=4)
    for n in names:
        assert torch.equal(first[n], again[n])
    assert any(not torch.equal(first[n] == 0, other[n] == 0) for n in names)


def test_pruning_probability_and_unknown_layers():
    model = tiny_classifier(0)
    state, groups = model.state_dict(), layer_groups(model)
    _, summary = prune_stragglers(state, groups, ["visual.transformer.resblocks.0.mlp.c_fc"], seed=1, probability=0.2)
    n = summary["numel"].iloc[0]
    assert abs(summary["zeroed"].iloc[0] - 0.2 * n) <= 5 * math.sqrt(n * 0.2 * 0.8)
    with pytest.raises(KeyError, match="not a layer"):
        prune_stragglers(state, groups, ["visual.nonexistent"], seed=0)
    pruned, empty = prune_stragglers(state, groups, [], seed=0)
    assert empty.empty and all(pruned[k] is state[k] for k in state)


# -- overlap -----------------------------------------------------------------------------------

def test_straggler_overlap_counts_and_jaccard():
    by_interpolation = {"m1": ["a", "b", "c"], "m2": [], "m3": ["x"]}
    by_sharpness = pd.DataFrame({"model": ["m1", "m1", "m1", "m2"], "layer": ["b", "c", "d", "y"], "straggler": [True, True, True, False]})
    table = straggler_overlap(by_interpolation, by_sharpness).set_index("model")
    assert table.loc["m1", "intersection"] == "b,c" and table.loc["m1", "jaccard"] == pytest.approx(2 / 4)
    assert table.loc["m2", "n_by_sharpness"] == 0 and table.loc["m2", "jaccard"] == 1.0
    assert table.loc["m3", "n_by_interpolation"] == 1 and table.loc["m3", "jaccard"] == 0.0


# -- command line ------------------------------------------------------------------------------

def test_prune_command_writes_pruned_checkpoint_and_summary(tmp_path):
    save_classifier(tiny_classifier(0), tmp_path / "ft.pt")
    layer = "visual.transformer.resblocks.1.mlp.c_proj"
    assert main(["prune", str(tmp_path / "ft.pt"), "--stragglers", layer, "--seed", "2", "-o", str(tmp_path / "pruned.pt")]) == 0
    original, pruned = load_classifier(tmp_path / "ft.pt"), load_classifier(tmp_path / "pruned.pt")
    summary = pd.read_csv(tmp_path / "pruned.masks.tsv", sep="\t")
    assert list(summary["layer"]) == [layer] and list(summary["model"]) == ["ft"]
    expected, _ = prune_stragglers(original.state_dict(), layer_groups(original), [layer], seed=2)
    assert all(torch.equal(expected[k], v) for k, v in pruned.state_dict().items())

    table = tmp_path / "stragglers.tsv"
    pd.DataFrame({"model": ["ft", "ft", "other"], "layer": [layer, "visual.proj", "visual.ln_post"],
                  "straggler": [True, False, True]}).to_csv(table, sep="\t", index=False)
    args = ["prune", str(tmp_path / "ft.pt"), "--stragglers-from", str(table), "--seed", "2", "-o", str(tmp_path / "p2.pt")]
    assert main(args) == 2  # two models in the table: which one?
    assert main(args + ["--model", "ft", "--summary", str(tmp_path / "s2.tsv")]) == 0
    again = load_classifier(tmp_path / "p2.pt")
    assert all(torch.equal(expected[k], v) for k, v in again.state_dict().items())
