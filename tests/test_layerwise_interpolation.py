"""Layer-wise interpolation with prefix caching against the plain loop it replaces: one
``evaluate_path(..., only=layer)`` per layer (itself tested against hand computations)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from interpsharp.data import load_cache, write_cache
from interpsharp.evaluate import evaluate_path
from interpsharp.interpolate import InterpolationPath
from interpsharp.layers import layer_groups
from interpsharp.layerwise_interpolation import COLUMNS, images_per_chunk, layerwise_interpolation
from interpsharp.prefix_cache import PrefixCache, stage_input_bytes

from conftest import TINY_ARCH, tiny_classifier
from test_evaluate import _make_cache

ARCH_1000 = replace(TINY_ARCH, num_classes=1000)
SUBSET = [3, 17, 256, 511, 998]
GROUPS = [[3, 17], [256], [998, 511, 0]]  # ObjectNet-style: a class's logit is its group's maximum


@pytest.fixture
def setup(tmp_path: Path):
    """Endpoints with a 1000-way head, a plain cache, a 200-class-style subset cache and an
    ObjectNet-style grouped cache, all with a ragged last batch at batch size 4."""
    theta_0 = tiny_classifier(seed=20, arch=ARCH_1000).state_dict()
    theta_1 = tiny_classifier(seed=21, arch=ARCH_1000).state_dict()
    probe = tiny_classifier(seed=20, arch=ARCH_1000)
    caches = {
        "plain": _make_cache(tmp_path / "plain", probe, n=11, num_classes=1000, seed=1, name="plain"),
        "subset": _make_cache(tmp_path / "subset", probe, n=9, num_classes=len(SUBSET), seed=2, subset=SUBSET, name="subset"),
    }
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (10, 3, 16, 16), dtype=np.uint8)
    write_cache(tmp_path / "grouped", images, rng.integers(0, 3, 10), ["a", "b", "c"],
                meta={"name": "grouped", "class_groups": GROUPS})
    caches["grouped"] = load_cache(tmp_path / "grouped")
    return theta_0, theta_1, caches


def _reference(theta_0, theta_1, caches, alphas, batch_size) -> pd.DataFrame:
    """The plain loop: every (layer, alpha) a full evaluation of a freshly written model."""
    model = tiny_classifier(seed=0, arch=ARCH_1000)
    path = InterpolationPath(theta_0, theta_1)
    tables = [
        evaluate_path(model, path, caches, alphas, only=names, batch_size=batch_size, device="cpu", progress=False)
        .assign(layer=layer)
        for layer, names in layer_groups(model).items()
    ]
    return pd.concat(tables, ignore_index=True)


@pytest.mark.parametrize("cache_bytes", [1, 2**30], ids=["one-batch-chunks", "one-chunk"])
def test_equals_one_plain_evaluation_per_layer_bit_for_bit(setup, cache_bytes):
    theta_0, theta_1, caches = setup
    alphas = [0.0, 0.3, 1.0]
    model = tiny_classifier(seed=5, arch=ARCH_1000)
    table = layerwise_interpolation(model, InterpolationPath(theta_0, theta_1), caches, alphas, batch_size=4,
                                    device="cpu", cache_bytes=cache_bytes, progress=False)
    expected = _reference(theta_0, theta_1, caches, alphas, batch_size=4)
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == len(layer_groups(model)) * len(alphas) * len(caches) * 2
    pd.testing.assert_frame_equal(table, expected, check_exact=True)
    # The comparison could fail: layers really move the numbers, and differently.
    loss_at_1 = table[(table.alpha == 1.0) & (table.metric == "loss") & (table.dataset == "plain")]["value"]
    assert loss_at_1.nunique() > len(loss_at_1) // 2


def test_model_is_left_at_theta_0_in_its_own_storage(setup):
    theta_0, theta_1, caches = setup
    model = tiny_classifier(seed=6, arch=ARCH_1000)
    storage = [p.data_ptr() for p in model.parameters()]
    layerwise_interpolation(model, InterpolationPath(theta_0, theta_1), caches, [0.5, 1.0], batch_size=4,
                            device="cpu", cache_bytes=1, progress=False)
    assert [p.data_ptr() for p in model.parameters()] == storage
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, theta_0[name]), name


def test_chosen_layers_only_and_unknown_layers_named(setup):
    theta_0, theta_1, caches = setup
    model = tiny_classifier(seed=7, arch=ARCH_1000)
    path = InterpolationPath(theta_0, theta_1)
    chosen = ["visual.transformer.resblocks.1.mlp.c_proj", "classification_head"]
    table = layerwise_interpolation(model, path, caches, [0.0, 1.0], layers=chosen, batch_size=4, device="cpu", progress=False)
    assert list(dict.fromkeys(table["layer"])) == chosen
    full = layerwise_interpolation(model, path, caches, [0.0, 1.0], batch_size=4, device="cpu", progress=False)
    pd.testing.assert_frame_equal(table, full[full.layer.isin(chosen)].reset_index(drop=True), check_exact=True)
    with pytest.raises(KeyError, match="visual.no_such_layer"):
        layerwise_interpolation(model, path, caches, [1.0], layers=["visual.no_such_layer"], device="cpu", progress=False)


def test_stage_input_bytes_is_what_the_cache_keeps_plus_the_inputs():
    model = tiny_classifier(seed=8)
    images = torch.randn(3, 3, TINY_ARCH.image_size, TINY_ARCH.image_size)
    for layers in (list(layer_groups(model)), ["visual.transformer.resblocks.1.attn", "classification_head"]):
        cache = PrefixCache(model, [images], layers)
        held = {id(t): t for t in [images, *cache.inputs[0].values()]}  # the caller holds the inputs
        per_image = sum(t.numel() * t.element_size() for t in held.values()) // len(images)
        assert stage_input_bytes(model, layers) == per_image, layers


def test_chunks_are_whole_batches_within_the_budget():
    model = tiny_classifier(seed=9)
    layers = list(layer_groups(model))
    per_image = stage_input_bytes(model, layers)
    assert images_per_chunk(model, layers, 8, 1) == 8  # one batch even over budget
    chunk = images_per_chunk(model, layers, 8, 100 * per_image)
    assert chunk % 8 == 0 and chunk * per_image <= 100 * per_image < (chunk + 8) * per_image


def test_bf16_autocast_sees_every_layer_it_moves(setup):
    """Autocast's weight cache would keep theta_0's bf16 copies for the whole sweep, so every
    layer at every alpha would score as theta_0 (it did before the cache was switched off)."""
    theta_0, theta_1, caches = setup
    model = tiny_classifier(seed=5, arch=ARCH_1000)
    path = InterpolationPath(theta_0, theta_1)
    table = layerwise_interpolation(model, path, {"plain": caches["plain"]}, [0.0, 1.0], layers=["classification_head"],
                                    batch_size=4, device="cpu", precision="bf16_autocast", progress=False)
    names = layer_groups(model)["classification_head"]
    expected = evaluate_path(model, path, {"plain": caches["plain"]}, [0.0, 1.0], only=names, batch_size=4, device="cpu",
                             precision="bf16_autocast", progress=False)
    loss = table[table.metric == "loss"]["value"].to_numpy()
    assert loss[0] != loss[1]
    assert loss == pytest.approx(expected[expected.metric == "loss"]["value"].to_numpy(), abs=1e-6)
