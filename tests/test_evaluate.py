"""Evaluation against hand computations in numpy; the alpha path against direct loading."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from interpsharp.checkpoints import classifier_from_state
from interpsharp.classifier import OPENAI_MEAN, OPENAI_STD, CLIPClassifier, Preprocess
from interpsharp.data import EvalCache, load_cache, write_cache
from interpsharp.evaluate import (
    PATH_COLUMNS,
    evaluate,
    evaluate_path,
    normalize_images,
    pick_device,
    read_rows,
)
from interpsharp.interpolate import InterpolationPath, StateDictMismatch, interpolate, interpolate_layer
from interpsharp.layers import layer_groups
from interpsharp.scores import EvalResult

from conftest import TINY_ARCH, tiny_classifier


def _numpy_normalize(images: np.ndarray, mean=OPENAI_MEAN, std=OPENAI_STD) -> np.ndarray:
    mean = np.asarray(mean, dtype=np.float64).reshape(1, 3, 1, 1)
    std = np.asarray(std, dtype=np.float64).reshape(1, 3, 1, 1)
    return ((images.astype(np.float64) / 255.0 - mean) / std).astype(np.float32)


def _hand_eval(model: CLIPClassifier, images: np.ndarray, labels: np.ndarray, subset=None,
               mean=OPENAI_MEAN, std=OPENAI_STD) -> tuple[float, float]:
    """Accuracy and mean cross-entropy from the model's logits, computed in numpy (float64)."""
    with torch.no_grad():
        logits = model(torch.from_numpy(_numpy_normalize(images, mean, std))).double().numpy()
    if subset is not None:
        logits = logits[:, subset]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(labels)), labels].mean()
    accuracy = (logits.argmax(axis=1) == labels).mean()
    return float(accuracy), float(loss)


def _make_cache(path: Path, model: CLIPClassifier, n: int, num_classes: int, seed: int, subset=None, name=None) -> EvalCache:
    """Random images; half the labels agree with the model's own prediction so accuracy is
    neither 0 nor 1 and an off-by-one batch would change it."""
    rng = np.random.default_rng(seed)
    size = model.arch.image_size
    images = rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    with torch.no_grad():
        logits = model(torch.from_numpy(_numpy_normalize(images))).numpy()
    if subset is not None:
        logits = logits[:, subset]
    labels = np.where(np.arange(n) % 2 == 0, logits.argmax(axis=1), rng.integers(0, num_classes, n))
    classnames = [f"class {i}" for i in range(num_classes)]
    write_cache(path, images, labels, classnames, class_subset=subset, meta={"name": name or path.name})
    return load_cache(path)


def test_evaluate_equals_hand_computation_with_a_ragged_last_batch(tmp_path: Path):
    model = tiny_classifier(seed=0)
    cache = _make_cache(tmp_path / "c", model, n=13, num_classes=5, seed=0)
    expected_acc, expected_loss = _hand_eval(model, np.asarray(cache.images), cache.labels)
    assert 0 < expected_acc < 1
    result = evaluate(model, cache, batch_size=4, device="cpu", progress=False)
    assert isinstance(result, EvalResult) and result.n == 13
    assert result.accuracy == pytest.approx(expected_acc, abs=1e-12)
    assert result.loss == pytest.approx(expected_loss, rel=1e-5)


def test_200_class_projection_scores_only_the_subset(tmp_path: Path):
    model = tiny_classifier(seed=1, arch=replace(TINY_ARCH, num_classes=1000))
    subset = [6, 11, 13, 15, 17, 22, 999]
    cache = _make_cache(tmp_path / "c", model, n=11, num_classes=len(subset), seed=1, subset=subset)
    images = np.asarray(cache.images)
    expected_acc, expected_loss = _hand_eval(model, images, cache.labels, subset=subset)
    result = evaluate(model, cache, batch_size=3, device="cpu", progress=False)
    assert result.accuracy == pytest.approx(expected_acc, abs=1e-12)
    assert result.loss == pytest.approx(expected_loss, rel=1e-5)
    # Without the projection the numbers would differ (labels index the subset, not the 1000).
    _, full_loss = _hand_eval(model, images, np.asarray(subset)[cache.labels])
    assert abs(full_loss - result.loss) > 1e-3


def test_indices_select_images(tmp_path: Path):
    model = tiny_classifier(seed=2)
    cache = _make_cache(tmp_path / "c", model, n=12, num_classes=5, seed=2)
    indices = [10, 2, 3, 4, 7]
    expected_acc, expected_loss = _hand_eval(model, np.asarray(cache.images)[indices], cache.labels[indices])
    result = evaluate(model, cache, batch_size=2, device="cpu", indices=indices, progress=False)
    assert result.n == 5
    assert result.accuracy == pytest.approx(expected_acc, abs=1e-12)
    assert result.loss == pytest.approx(expected_loss, rel=1e-5)
    with pytest.raises(IndexError, match=r"indices must lie in 0\.\.11"):
        evaluate(model, cache, indices=[12], progress=False)


def test_normalize_images_matches_formula():
    images = torch.randint(0, 256, (2, 3, 5, 4), dtype=torch.uint8)
    expected = torch.from_numpy(_numpy_normalize(images.numpy()))
    torch.testing.assert_close(normalize_images(images, Preprocess()), expected, atol=1e-6, rtol=0)
    half = normalize_images(images, Preprocess(), dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), expected, atol=2e-2, rtol=1e-2)
    laion = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    torch.testing.assert_close(normalize_images(images, laion), images.float() / 127.5 - 1.0, atol=1e-6, rtol=0)
    with pytest.raises(TypeError, match="uint8"):
        normalize_images(images.float(), Preprocess())


def test_evaluation_normalises_with_the_models_own_constants(tmp_path: Path):
    """A tower trained with mean/std 0.5 (LAION's ViT-L-14) is scored on its own input scale,
    not OpenAI's: the hand computation with its constants agrees, OpenAI's does not."""
    laion = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    model = tiny_classifier(seed=4)
    model.preprocess = Preprocess(*laion)
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (12, 3, 16, 16), dtype=np.uint8)
    labels = rng.integers(0, 5, 12)
    write_cache(tmp_path / "c", images, labels, [f"class {i}" for i in range(5)])
    result = evaluate(model, load_cache(tmp_path / "c"), batch_size=5, device="cpu", progress=False)
    own = _hand_eval(model, images, labels, mean=laion[0], std=laion[1])
    openai = _hand_eval(model, images, labels)
    assert result.loss == pytest.approx(own[1], rel=1e-5) and result.accuracy == pytest.approx(own[0], abs=1e-12)
    assert abs(result.loss - openai[1]) > 1e-3


def test_bf16_precisions_cast_in_place_and_invalid_precision_is_refused(tmp_path: Path):
    """How precisions are applied. Whether bf16 is accurate enough is the precision gate's
    question, tested on a trained model in test_precision.py."""
    model = tiny_classifier(seed=3)
    cache = _make_cache(tmp_path / "c", model, n=9, num_classes=5, seed=3)
    evaluate(model, cache, batch_size=4, device="cpu", precision="bf16_autocast", progress=False)
    assert next(model.parameters()).dtype == torch.float32
    evaluate(model, cache, batch_size=4, device="cpu", precision="bf16", progress=False)
    assert next(model.parameters()).dtype == torch.bfloat16
    # Casting happened outside inference mode: the parameters can still take gradients.
    assert not any(p.is_inference() for p in model.parameters())
    with pytest.raises(ValueError, match="weights are bfloat16"):
        evaluate(model, cache, device="cpu", precision="fp32", progress=False)
    with pytest.raises(ValueError, match="unknown precision 'fp16'; choose one of fp32, bf16, bf16_autocast"):
        evaluate(model, cache, device="cpu", precision="fp16", progress=False)


@pytest.mark.parametrize("idx", [[3, 4, 5, 6], [9, 0, 4], [2], [5, 5, 6]])
def test_read_rows_into_a_preallocated_buffer(tmp_path: Path, idx: list[int]):
    """The CUDA feed reads memory-mapped rows straight into pinned buffers with this."""
    source = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint8, shape=(10, 3, 2, 2))
    source[:] = np.random.default_rng(0).integers(0, 256, source.shape, dtype=np.uint8)
    out = np.zeros((len(idx), 3, 2, 2), dtype=np.uint8)
    assert read_rows(source, np.asarray(idx), out) is out
    np.testing.assert_array_equal(out, np.asarray(source)[idx])


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert (pick_device().type == "cuda") == torch.cuda.is_available()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")


def replace_head(model: CLIPClassifier, num_classes: int) -> CLIPClassifier:
    """A classifier with the same tower and a fresh head of another size (to make labels)."""
    other = CLIPClassifier(replace(model.arch, num_classes=num_classes))
    other.visual.load_state_dict(model.visual.state_dict())
    return other.eval()


def test_head_size_mismatch_is_reported(tmp_path: Path):
    model = tiny_classifier(seed=4)
    cache = _make_cache(tmp_path / "seven", replace_head(model, 7), n=3, num_classes=7, seed=4)
    with pytest.raises(ValueError, match="cache has 7 classes but the model outputs 5 logits"):
        evaluate(model, cache, device="cpu", progress=False)


@pytest.fixture
def endpoints() -> tuple[dict, dict]:
    return tiny_classifier(seed=10).state_dict(), tiny_classifier(seed=11).state_dict()


def _direct(state: dict, cache: EvalCache) -> EvalResult:
    return evaluate(classifier_from_state(state, head_width=TINY_ARCH.head_width), cache, batch_size=5, device="cpu", progress=False)


def test_evaluate_path_equals_direct_evaluation_and_reuses_one_model(tmp_path: Path, endpoints):
    theta_0, theta_1 = endpoints
    model = tiny_classifier(seed=99)
    caches = {
        "first": _make_cache(tmp_path / "a", model, n=7, num_classes=5, seed=5, name="first"),
        "second": _make_cache(tmp_path / "b", model, n=6, num_classes=5, seed=6, name="second"),
    }
    ids_before = [(id(p), p.data_ptr()) for p in model.parameters()]
    df = evaluate_path(model, InterpolationPath(theta_0, theta_1), caches, [0.0, 0.5, 1.0],
                       model_name="ft", batch_size=5, device="cpu", progress=False)
    assert [(id(p), p.data_ptr()) for p in model.parameters()] == ids_before
    assert list(df.columns) == list(PATH_COLUMNS)
    assert len(df) == 3 * 2 * 2 and set(df["metric"]) == {"accuracy", "loss"} and set(df["model"]) == {"ft"}
    for alpha, state in ((0.0, theta_0), (0.5, interpolate(theta_0, theta_1, 0.5)), (1.0, theta_1)):
        for name, cache in caches.items():
            direct = _direct(state, cache)
            rows = df[(df.alpha == alpha) & (df.dataset == name)].set_index("metric")
            assert rows.loc["accuracy", "value"] == pytest.approx(direct.accuracy, abs=1e-12)
            assert rows.loc["loss", "value"] == pytest.approx(direct.loss, rel=1e-6)
            assert set(rows["n"]) == {len(cache)}
    # The endpoints really differ, so the comparison above could have failed.
    assert _direct(theta_0, caches["first"]).loss != pytest.approx(_direct(theta_1, caches["first"]).loss)


def test_layerwise_path_uses_only_that_layer(tmp_path: Path, endpoints):
    theta_0, theta_1 = endpoints
    model = tiny_classifier(seed=98)
    cache = _make_cache(tmp_path / "a", model, n=6, num_classes=5, seed=7)
    names = layer_groups(model)["visual.transformer.resblocks.1.mlp.c_fc"]
    df = evaluate_path(model, InterpolationPath(theta_0, theta_1), {"a": cache}, [1.0], only=names,
                       batch_size=4, device="cpu", progress=False)
    direct = _direct(interpolate_layer(theta_0, theta_1, 1.0, names), cache)
    assert df.set_index("metric").loc["loss", "value"] == pytest.approx(direct.loss, rel=1e-6)


def test_path_that_leaves_tensors_unset_is_refused(tmp_path: Path, endpoints):
    theta_0, theta_1 = endpoints
    partial = {k: v for k, v in theta_0.items() if not k.startswith("classification_head")}
    partial_1 = {k: theta_1[k] for k in partial}
    model = tiny_classifier(seed=97)
    cache = _make_cache(tmp_path / "a", model, n=2, num_classes=5, seed=8)
    with pytest.raises(StateDictMismatch, match="classification_head.bias"):
        evaluate_path(model, InterpolationPath(partial, partial_1), {"a": cache}, [0.0], device="cpu", progress=False)


def test_grouped_classes_score_the_maximum_logit_of_their_head_classes(tmp_path: Path):
    """ObjectNet's projection (WiSE-FT's project_logits): class k of the set scores
    max(logits[:, groups[k]]), against a numpy hand computation; groups of unequal size."""
    from interpsharp.sharpness import cross_entropy_criterion

    model = tiny_classifier(seed=5)
    groups = [[0, 3], [1], [4, 2, 0]]
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (11, 3, 16, 16), dtype=np.uint8)
    with torch.no_grad():
        logits = model(torch.from_numpy(_numpy_normalize(images))).double().numpy()
    projected = np.stack([logits[:, g].max(axis=1) for g in groups], axis=1)
    labels = np.where(np.arange(11) % 2 == 0, projected.argmax(axis=1), rng.integers(0, 3, 11))
    write_cache(tmp_path / "c", images, labels, ["pet", "bird", "other"], meta={"class_groups": groups})
    cache = load_cache(tmp_path / "c")
    assert cache.class_groups == groups
    shifted = projected - projected.max(axis=1, keepdims=True)
    expected_loss = -(shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)))[np.arange(11), labels].mean()
    result = evaluate(model, cache, batch_size=4, device="cpu", progress=False)
    assert 0 < result.accuracy < 1
    assert result.accuracy == pytest.approx((projected.argmax(axis=1) == labels).mean(), abs=1e-12)
    assert result.loss == pytest.approx(expected_loss, rel=1e-5)
    criterion = cross_entropy_criterion(class_groups=groups)
    with torch.no_grad():
        loss = criterion(model(torch.from_numpy(_numpy_normalize(images))), torch.from_numpy(labels))
    assert loss.item() == pytest.approx(expected_loss, rel=1e-5)
