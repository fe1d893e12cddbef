"""A model without stragglers: its pruning job copies the evaluated path instead of scoring it
again. The copy must equal, to the byte, what scoring the (unpruned) path gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from interpsharp.data import load_cache, write_cache
from interpsharp.evaluate import path_table, score_path
from interpsharp.interpolate import InterpolationPath
from interpsharp.tables import write_tsv
from interpsharp.unpruned_path import unpruned_path

from conftest import tiny_classifier

ALPHAS = [0.0, 0.3, 0.7, 1.0]


def _cache(path: Path, n: int, seed: int, image_size: int):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 3, image_size, image_size), dtype=np.uint8)
    labels = rng.integers(0, 5, n)
    write_cache(path, images, labels, [f"class {i}" for i in range(5)], meta={"name": path.name})
    return load_cache(path)


@pytest.fixture
def evaluated(tmp_path):
    """The evaluation job's files (per-alpha tables of three sets, per-alpha scores of the main
    OOD set "ood" with its selection split) and the caches and path they came from."""
    theta_0, theta_1 = tiny_classifier(seed=0), tiny_classifier(seed=1)
    size = theta_0.arch.image_size
    caches = {name: _cache(tmp_path / name, n, seed, size) for name, n, seed in (("id", 23, 0), ("near", 17, 1), ("ood", 29, 2))}
    path = InterpolationPath(theta_0.state_dict(), theta_1.state_dict())
    splits = {"ood": {"selection": np.arange(0, 29, 2), "heldout": np.arange(1, 29, 2)}}
    scored = score_path(theta_0, path, caches, ALPHAS, model_name="m", batch_size=8, device="cpu", progress=False)
    table = path_table(scored, "m", splits)
    tables, scores = [], []
    for i, alpha in enumerate(ALPHAS):
        tables.append(write_tsv(table[table["alpha"] == alpha].reset_index(drop=True), tmp_path / f"eval/alpha_{alpha}.tsv"))
        scores.append(scored["ood"].take([i]).save(tmp_path / f"scores/alpha_{alpha}.npz", dataset="ood", model="m"))
    return theta_0, path, caches, splits, tables, scores


def test_copied_path_equals_scoring_the_unpruned_path_again(evaluated, tmp_path):
    theta_0, path, caches, splits, tables, scores = evaluated
    datasets = ["ood", "id"]  # pruning's own order, not the evaluation's
    pruned_caches = {name: caches[name] for name in datasets}
    unpruned = InterpolationPath(path.theta_0, {k: v.clone() for k, v in path.theta_1.items()})
    rescored = score_path(theta_0, unpruned, pruned_caches, ALPHAS, model_name="m", batch_size=8, device="cpu",
                          progress=False)
    expected = write_tsv(path_table(rescored, "m", splits), tmp_path / "expected.tsv").read_bytes()

    table, main = unpruned_path(tables, scores, datasets)
    assert write_tsv(table, tmp_path / "copied.tsv").read_bytes() == expected
    assert list(table["dataset"].unique()) == datasets
    np.testing.assert_array_equal(main.alphas, ALPHAS)
    np.testing.assert_array_equal(main.correct, rescored["ood"].correct)
    np.testing.assert_array_equal(main.loss, rescored["ood"].loss)


def test_a_pruning_set_that_was_not_evaluated_is_named(evaluated):
    *_, tables, scores = evaluated
    with pytest.raises(ValueError, match=r"no rows for \['far'\]"):
        unpruned_path(tables, scores, ["ood", "far"])
