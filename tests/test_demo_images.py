"""The demo image generator: determinism, class balance, and styles that really differ."""

from __future__ import annotations

import numpy as np
import pytest

from interpsharp.data import load_cache
from interpsharp.demo.captions import PRETRAIN_STYLES, TEMPLATES, all_captions, caption
from interpsharp.demo.images import CLASSNAMES, STYLES, generate, write_style_cache

N = 200  # 20 per class: enough for the style statistics to separate by a wide margin


@pytest.fixture(scope="module")
def sets() -> dict[str, np.ndarray]:
    return {style: generate(style, N, seed=100 + i).images.astype(np.float64) for i, style in enumerate(STYLES)}


@pytest.mark.parametrize("style", STYLES)
def test_same_seed_same_images_and_prefix_stable(style):
    a = generate(style, 30, seed=7)
    b = generate(style, 20, seed=7)
    assert a.images.dtype == np.uint8 and a.images.shape == (30, 3, 32, 32)
    np.testing.assert_array_equal(a.images[:20], b.images)
    assert a.attributes[:20] == b.attributes
    assert not np.array_equal(generate(style, 20, seed=8).images, b.images)


def test_classes_are_balanced_and_images_distinct():
    data = generate("photo", 50, seed=3)
    assert np.bincount(data.labels, minlength=len(CLASSNAMES)).tolist() == [5] * len(CLASSNAMES)
    flat = data.images.reshape(50, -1)
    assert len({row.tobytes() for row in flat}) == 50


def _saturation(images: np.ndarray) -> float:
    return float((images.max(axis=1) - images.min(axis=1)).mean())


def _high_frequency_energy(images: np.ndarray) -> float:
    grey = images.mean(axis=1)
    lap = 4 * grey[:, 1:-1, 1:-1] - grey[:, :-2, 1:-1] - grey[:, 2:, 1:-1] - grey[:, 1:-1, :-2] - grey[:, 1:-1, 2:]
    return float(np.abs(lap).mean())


def _border_variance(images: np.ndarray) -> float:
    """Per-image variance of the 2-pixel frame, where a plain background shows."""
    mask = np.ones(images.shape[-2:], dtype=bool)
    mask[2:-2, 2:-2] = False
    return float(images[:, :, mask].var(axis=2).mean())


# One statistic per style, with the direction the style's definition implies.
STYLE_STATISTICS = [
    ("photo2", _high_frequency_energy, "lower"),   # Gaussian blur, smaller shapes
    ("sketch", _saturation, "lower"),              # grey outline on white
    ("texture", _high_frequency_energy, "higher"),  # striped / checkered / dotted fills
    ("clutter", _border_variance, "higher"),       # distractors, occluder and pixel noise
]


@pytest.mark.parametrize("style,statistic,direction", STYLE_STATISTICS, ids=lambda v: getattr(v, "__name__", v))
def test_style_differs_from_photo(sets, style, statistic, direction):
    photo, other = statistic(sets["photo"]), statistic(sets[style])
    if direction == "lower":
        assert other < 0.9 * photo, (style, other, photo)
    else:
        assert other > 1.5 * photo, (style, other, photo)


def test_cache_records_provenance_and_matches_generator(tmp_path):
    write_style_cache(tmp_path / "sk", "sketch", 20, seed=11, name="sketch")
    cache = load_cache(tmp_path / "sk")
    data = generate("sketch", 20, seed=11)
    np.testing.assert_array_equal(np.asarray(cache.images), data.images)
    np.testing.assert_array_equal(cache.labels, data.labels)
    assert cache.classnames == list(CLASSNAMES)
    assert (cache.meta["style"], cache.meta["seed"], cache.meta["name"]) == ("sketch", 11, "sketch")
    assert cache.meta["style_params"]["fill"] == "outline"


def test_unknown_style_is_refused():
    with pytest.raises(KeyError, match="unknown style 'cartoon'"):
        generate("cartoon", 2, seed=0)


def test_captions_name_class_and_cover_generated_data():
    known = set(all_captions())
    assert len(known) == len(all_captions())
    for i, style in enumerate(PRETRAIN_STYLES):
        data = generate(style, 20, seed=i)
        for label, attrs in zip(data.labels, data.attributes):
            text = caption(style, CLASSNAMES[label], attrs)
            assert text in known and CLASSNAMES[label] in text.split()
    with pytest.raises(KeyError, match="photo2"):
        caption("photo2", "star", data.attributes[0])
    assert all(t.count("{}") == 1 for t in TEMPLATES)


def test_one_set_can_be_larger_and_extends_the_smaller(tmp_path):
    """The main OOD set is larger than the others (config demo.set_images); its first images
    are those of the default-size set, and an unknown set name is refused."""
    from interpsharp.cli import main
    from interpsharp.demo.world import WorldConfig

    assert main(["demo", "images", "--out", str(tmp_path / "a"), "--name", "clutter", "--name", "sketch",
                 "--eval-images", "20", "--set-images", "clutter=30"]) == 0
    assert main(["demo", "images", "--out", str(tmp_path / "b"), "--name", "clutter", "--eval-images", "20"]) == 0
    big, small = load_cache(tmp_path / "a" / "clutter"), load_cache(tmp_path / "b" / "clutter")
    assert len(big) == 30 and len(small) == 20 and len(load_cache(tmp_path / "a" / "sketch")) == 20
    np.testing.assert_array_equal(np.asarray(big.images[:20]), np.asarray(small.images))
    with pytest.raises(KeyError, match="unknown evaluation sets"):
        WorldConfig(set_images={"imagenet": 10})
