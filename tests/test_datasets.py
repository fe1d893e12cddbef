"""Dataset builders: real on-disk layouts -> caches, labels, class subsets, pixels, refusals."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Resize

from interpsharp.data import load_cache
from interpsharp.class_maps import OBJECTNET_IMAGES, ClassMapError, objectnet_classes
from interpsharp.datasets import BUILDER_VERSION, ClassSource, DatasetLayoutError, build_cache, layout_classes, plan_dataset
from interpsharp.classifier import Preprocess
from interpsharp.evaluate import normalize_images

from dataset_trees import make_flat_tree, make_objectnet_tree, make_tree, wnids

SUBSETS_JSON = Path(__file__).resolve().parents[1] / "interpsharp" / "resources" / "imagenet_class_subsets.json"


def _sources(cache_dir: Path) -> list[tuple[str, str, int]]:
    lines = (cache_dir / "sources.tsv").read_text().splitlines()
    assert lines[0] == "source\tsha256\tlabel"
    return [(s, h, int(l)) for s, h, l in (line.split("\t") for line in lines[1:])]


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory) -> Path:
    """1000 WordNet-ID folders, created in shuffled order; a few hold several images."""
    root = tmp_path_factory.mktemp("imagenet") / "val"
    names = wnids(1000, seed=1)
    counts = [1] * 1000
    for i in (0, 5, 500):
        counts[i] = 3
    make_tree(root, names, counts, seed=1)
    return root


@pytest.fixture(scope="module")
def two_hundred_root(tmp_path_factory) -> Path:
    """200 WordNet-ID folders (the ImageNet-A / ImageNet-R shape); two folders hold 4 images."""
    root = tmp_path_factory.mktemp("two_hundred") / "imagenet-a"
    counts = [1] * 200
    counts[0] = counts[199] = 4
    make_tree(root, wnids(200, seed=2), counts, seed=2)
    (root / "README.txt").write_text("ImageNet-A ships this file next to its class folders")
    return root


@pytest.mark.parametrize("layout", ["imagenet", "imagenet-sketch"])
def test_imagenet_labels_are_positions_of_sorted_wnid_folders(imagenet_root: Path, tmp_path: Path, layout: str):
    out = build_cache(layout, imagenet_root, tmp_path / "cache", image_size=12, progress=False)
    cache = load_cache(out)
    sorted_wnids = sorted(p.name for p in imagenet_root.iterdir())
    sources = _sources(out)
    assert len(cache) == 1006
    for (source, sha, label), cached_label in zip(sources, cache.labels):
        folder = source.split("/")[0]
        assert label == cached_label == sorted_wnids.index(folder)
        assert sha == hashlib.sha256((imagenet_root / source).read_bytes()).hexdigest()
    assert list(cache.labels) == sorted(cache.labels)
    assert cache.classnames == list(open_clip.IMAGENET_CLASSNAMES)
    assert cache.class_subset is None
    assert cache.meta["name"] == cache.meta["layout"] == layout
    assert cache.meta["root"] == str(imagenet_root.resolve())
    assert cache.meta["image_size"] == 12 and cache.meta["builder_version"] == BUILDER_VERSION


@pytest.mark.parametrize("layout,key", [("imagenet-a", "imagenet_a"), ("imagenet-r", "imagenet_r")])
def test_200_class_sets_carry_the_reference_subset(two_hundred_root: Path, tmp_path: Path, layout: str, key: str):
    reference = json.loads(SUBSETS_JSON.read_text())[key]
    cache = load_cache(build_cache(layout, two_hundred_root, tmp_path / "cache", image_size=8, progress=False))
    assert cache.class_subset == reference
    assert cache.classnames == [open_clip.IMAGENET_CLASSNAMES[i] for i in reference]
    sorted_wnids = sorted(p.name for p in two_hundred_root.iterdir() if p.is_dir())
    labels = [sorted_wnids.index(s.split("/")[0]) for s, _, _ in _sources(cache.path)]
    assert list(cache.labels) == labels
    assert set(labels) == set(range(200)) and len(labels) == 206


def test_imagenetv2_labels_are_folder_numbers_not_string_order(tmp_path: Path):
    root = tmp_path / "imagenetv2-matched-frequency-format-val"
    names = [str(i) for i in range(1000)]
    np.random.default_rng(3).shuffle(names)
    make_flat_tree(root, names)
    cache = load_cache(build_cache("imagenetv2", root, tmp_path / "cache", image_size=8, progress=False))
    np.testing.assert_array_equal(cache.labels, np.arange(1000))
    sources = _sources(cache.path)
    assert sources[10][0] == "10/img.png" and sources[10][2] == 10
    # The test can tell the two orders apart: in string order folder "10" comes third.
    assert sorted(str(i) for i in range(1000)).index("10") == 2
    assert cache.classnames == list(open_clip.IMAGENET_CLASSNAMES) and cache.class_subset is None


@pytest.mark.parametrize("image_size", [12, 24])
def test_pixels_equal_torchvision_and_open_clip_eval_transforms(two_hundred_root: Path, tmp_path: Path, image_size: int):
    out = build_cache("imagenet-a", two_hundred_root, tmp_path / "cache", image_size=image_size, progress=False)
    cache = load_cache(out)
    reference = Compose([Resize(image_size, interpolation=InterpolationMode.BICUBIC), CenterCrop(image_size)])
    open_clip_eval = open_clip.image_transform(image_size, is_train=False)
    modes_seen = set()
    for i, (source, _, _) in enumerate(_sources(out)[:14]):
        with Image.open(two_hundred_root / source) as image:
            modes_seen.add(image.mode)
            rgb = image.convert("RGB")  # torchvision ImageFolder's loader, as in WiSE-FT
        expected = np.asarray(reference(rgb)).transpose(2, 0, 1)
        np.testing.assert_array_equal(cache.images[i], expected, err_msg=source)
        ours = normalize_images(torch.from_numpy(np.array(cache.images[i : i + 1])), Preprocess())[0]
        torch.testing.assert_close(ours, open_clip_eval(rgb), atol=1e-5, rtol=0)
    assert {"RGB", "L", "P", "RGBA", "CMYK"} <= modes_seen


def test_max_per_class_and_limit_are_deterministic_and_recorded(two_hundred_root: Path, tmp_path: Path):
    plan = plan_dataset("imagenet-a", two_hundred_root, max_per_class=2)
    assert len(plan.files) == 202 and plan.num_found == 206
    folders = sorted(p for p in two_hundred_root.iterdir() if p.is_dir())
    big = next(i for i, f in enumerate(folders) if len(list(f.iterdir())) == 4)
    assert [f for f, label in zip(plan.files, plan.labels) if label == big] == sorted(folders[big].iterdir())[:2]

    a = build_cache("imagenet-a", two_hundred_root, tmp_path / "a", image_size=8, max_per_class=2, limit=10, progress=False)
    b = build_cache("imagenet-a", two_hundred_root, tmp_path / "b", image_size=8, max_per_class=2, limit=10, progress=False)
    ca, cb = load_cache(a), load_cache(b)
    assert len(ca) == 10
    assert _sources(a) == _sources(b)
    np.testing.assert_array_equal(ca.images, cb.images)
    assert ca.labels[0] == 0 and ca.labels[-1] == 199  # spread over all classes, not the first ten
    assert ca.meta["limit"] == 10 and ca.meta["max_per_class"] == 2 and ca.meta["num_found"] == 206


def test_parallel_decode_keeps_order(two_hundred_root: Path, tmp_path: Path):
    serial = build_cache("imagenet-r", two_hundred_root, tmp_path / "serial", image_size=8, progress=False)
    threaded = build_cache("imagenet-r", two_hundred_root, tmp_path / "threaded", image_size=8, workers=3, progress=False)
    assert _sources(serial) == _sources(threaded)
    np.testing.assert_array_equal(load_cache(serial).images, load_cache(threaded).images)


# -- refusals -----------------------------------------------------------------------------

def test_missing_root(tmp_path: Path):
    with pytest.raises(DatasetLayoutError, match=r"nope: does not exist; expected the ImageNet-A root"):
        build_cache("imagenet-a", tmp_path / "nope", tmp_path / "cache", progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetLayoutError, match="is not a directory"):
        plan_dataset("imagenet", tmp_path / "file")


def test_wrong_folder_count_names_path_and_expected_layout(tmp_path: Path):
    root = tmp_path / "imagenet-a"
    make_flat_tree(root, wnids(3))
    with pytest.raises(DatasetLayoutError) as err:
        plan_dataset("imagenet-a", root)
    assert str(root) in str(err.value)
    assert "expected 200 WordNet-ID folders like n01498041/ for ImageNet-A, found 3" in str(err.value)


def test_folders_that_are_not_wnids(tmp_path: Path):
    root = tmp_path / "imagenet-r"
    make_flat_tree(root, wnids(199) + ["cats"])
    with pytest.raises(DatasetLayoutError, match="not WordNet IDs: cats"):
        plan_dataset("imagenet-r", root)


@pytest.mark.parametrize("rename", [("7", "007"), ("999", "1000")])
def test_imagenetv2_folders_must_be_0_to_999(tmp_path: Path, rename: tuple[str, str]):
    root = tmp_path / "v2"
    make_flat_tree(root, [rename[1] if str(i) == rename[0] else str(i) for i in range(1000)])
    with pytest.raises(DatasetLayoutError, match=f"folders named 0 .. 999 .*unexpected folder names: {rename[1]}"):
        plan_dataset("imagenetv2", root)


def test_empty_class_folder(tmp_path: Path):
    root = tmp_path / "imagenet-a"
    names = wnids(200)
    make_flat_tree(root, names)
    (root / names[7] / "img.png").unlink()
    (root / names[7] / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetLayoutError, match=f"{names[7]}: empty class folder"):
        plan_dataset("imagenet-a", root)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_image_names_the_file_and_leaves_no_cache(tmp_path: Path, damage: str):
    root = tmp_path / "imagenet-r"
    names = wnids(200)
    make_tree(root, names, 1, seed=4)
    victim = next((root / sorted(names)[3]).iterdir())
    data = victim.read_bytes()
    victim.write_bytes(b"this is not an image" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(DatasetLayoutError, match=f"{victim}: unreadable image"):
        build_cache("imagenet-r", root, tmp_path / "cache", image_size=8, progress=False)
    assert not (tmp_path / "cache").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["imagenet-r"]  # no temporary leftovers


def test_unknown_layout(tmp_path: Path):
    with pytest.raises(DatasetLayoutError, match="unknown dataset layout 'imagenet-c'; known layouts: imagenet,"):
        plan_dataset("imagenet-c", tmp_path)


# -- imagefolder ---------------------------------------------------------------------------------


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """An ID set and a shifted set of the same 3 classes (folder names with underscores), the
    shifted one with one class missing in a second copy."""
    make_tree(tmp_path / "id", ["golden_retriever", "tabby", "barn_owl"], [2, 1, 3], seed=5)
    make_tree(tmp_path / "ood", ["barn_owl", "golden_retriever", "tabby"], 1, seed=6)
    make_tree(tmp_path / "ood_two", ["barn_owl", "tabby"], 1, seed=7)
    return tmp_path / "id", tmp_path / "ood"


def test_imagefolder_classes_are_sorted_folders_named_by_themselves_or_by_a_file(folders, tmp_path: Path):
    id_root, _ = folders
    assert layout_classes("imagefolder", id_root) == ["barn owl", "golden retriever", "tabby"]
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"golden_retriever": "golden retriever", "tabby": "tabby cat", "barn_owl": "barn owl"}))
    assert layout_classes("imagefolder", id_root, ClassSource(classnames=names)) == ["barn owl", "golden retriever", "tabby cat"]
    cache = load_cache(build_cache("imagefolder", id_root, tmp_path / "c", image_size=8, name="mine", progress=False))
    assert cache.classnames == ["barn owl", "golden retriever", "tabby"] and cache.name == "mine"
    assert cache.labels.tolist() == [0, 0, 0, 1, 1, 2]
    assert [s.split("/")[0] for s, _, _ in _sources(tmp_path / "c")] == ["barn_owl"] * 3 + ["golden_retriever"] * 2 + ["tabby"]


def test_an_ood_imagefolder_is_scored_against_the_id_heads_classes(folders, tmp_path: Path):
    id_root, ood_root = folders
    head = layout_classes("imagefolder", id_root)
    cache = load_cache(build_cache("imagefolder", ood_root, tmp_path / "ood", image_size=8, progress=False, head_classnames=head))
    assert cache.classnames == head and cache.class_subset is None and cache.class_groups is None
    with pytest.raises(ClassMapError, match="lacks 1 of the ID set's 3 classes"):
        build_cache("imagefolder", tmp_path / "ood_two", tmp_path / "two", image_size=8, progress=False, head_classnames=head)
    assert not (tmp_path / "two").exists()
    two = load_cache(build_cache("imagefolder", tmp_path / "ood_two", tmp_path / "two", image_size=8, progress=False,
                                 head_classnames=head, classes=ClassSource(subset=True)))
    assert two.classnames == ["barn owl", "tabby"] and two.class_subset == [0, 2] and two.labels.tolist() == [0, 1]
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"barn owl": ["barn owl"], "tabby": ["tabby", "golden retriever"]}))
    grouped = load_cache(build_cache("imagefolder", tmp_path / "ood_two", tmp_path / "g", image_size=8, progress=False,
                                     head_classnames=head, classes=ClassSource(mapping=mapping)))
    assert grouped.class_groups == [[0], [2, 1]] and grouped.class_subset is None


def test_imagenet_layouts_refuse_a_head_that_is_not_imagenets(two_hundred_root: Path):
    with pytest.raises(ClassMapError, match="scored against ImageNet-1k's 1000 classes, but the ID set has 3 other"):
        plan_dataset("imagenet-a", two_hundred_root, head_classnames=["a", "b", "c"])
    with pytest.raises(ClassMapError, match="apply to layout 'imagefolder' only"):
        plan_dataset("imagenet-a", two_hundred_root, classes=ClassSource(subset=True))


# -- ObjectNet -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def objectnet_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("objectnet") / "objectnet-1.0" / "images"
    make_objectnet_tree(root, OBJECTNET_IMAGES)
    return root


def test_objectnet_keeps_the_113_mapped_classes_and_carries_their_imagenet_groups(objectnet_root: Path, tmp_path: Path):
    classes = objectnet_classes()
    plan = plan_dataset("objectnet", objectnet_root, head_classnames=list(open_clip.IMAGENET_CLASSNAMES))
    assert plan.num_found == len(plan.files) == OBJECTNET_IMAGES
    assert not any(p.parent.name in ("air_freshener", "ziploc_bag") for p in plan.files)
    assert plan.classnames == classes.names and plan.class_groups == classes.imagenet_groups and plan.class_subset is None
    assert [classes.folders[label] for label in plan.labels[::500]] == [p.parent.name for p in plan.files[::500]]
    cache = load_cache(build_cache("objectnet", objectnet_root, tmp_path / "c", image_size=16, limit=40, progress=False))
    assert len(cache) == 40 and cache.meta["num_found"] == OBJECTNET_IMAGES and cache.class_groups == classes.imagenet_groups


def test_objectnet_loses_its_red_border_before_resizing(objectnet_root: Path, tmp_path: Path):
    """As WiSE-FT's loader: crop 2 px from every side, then resize + centre crop."""
    out = build_cache("objectnet", objectnet_root, tmp_path / "c", image_size=16, limit=12, progress=False)
    cache = load_cache(out)
    reference = Compose([Resize(16, interpolation=InterpolationMode.BICUBIC), CenterCrop(16)])
    for i, (source, _, _) in enumerate(_sources(out)):
        with Image.open(objectnet_root / source) as image:
            rgb = image.convert("RGB")
        w, h = rgb.size
        expected = np.asarray(reference(rgb.crop((2, 2, w - 2, h - 2)))).transpose(2, 0, 1)
        np.testing.assert_array_equal(cache.images[i], expected, err_msg=source)
        uncropped = np.asarray(reference(rgb)).transpose(2, 0, 1)
        assert not np.array_equal(cache.images[i], uncropped)


def test_a_partial_objectnet_is_refused_whatever_the_limit(tmp_path: Path):
    root = tmp_path / "images"
    files = make_objectnet_tree(root, OBJECTNET_IMAGES)
    files[100].unlink()
    with pytest.raises(DatasetLayoutError, match=f"18573 images in the 113 classes used, but the complete ObjectNet .* has {OBJECTNET_IMAGES}"):
        plan_dataset("objectnet", root, limit=10)
    (root / objectnet_classes().folders[5]).rename(root / "renamed")
    with pytest.raises(DatasetLayoutError, match="1 of the 113 are missing"):
        plan_dataset("objectnet", root)
