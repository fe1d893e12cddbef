"""The evaluation-cache format: round trip, memory mapping, atomicity, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from interpsharp.data import CacheError, CacheWriter, load_cache, load_caches_by_name, write_cache


def _images(n: int, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)


def test_round_trip_is_exact_and_memory_mapped(tmp_path: Path):
    images, labels = _images(7), [0, 1, 2, 0, 1, 2, 0]
    write_cache(tmp_path / "c", images, labels, ["a", "b", "c"], class_subset=[5, 9, 11],
                sources=[(f"f{i}.jpg", f"{i:064x}") for i in range(7)], meta={"seed": 3, "name": "toy"})
    cache = load_cache(tmp_path / "c")
    assert isinstance(cache.images, np.memmap)
    assert np.array_equal(cache.images, images) and cache.labels.tolist() == labels
    assert cache.class_subset == [5, 9, 11] and cache.classnames == ["a", "b", "c"]
    assert cache.name == "toy" and cache.meta["seed"] == 3
    rows = (tmp_path / "c" / "sources.tsv").read_text().splitlines()
    assert rows[0] == "source\tsha256\tlabel" and rows[3].startswith("f2.jpg\t" + "2".rjust(64, "0"))


def test_batches_cover_all_images_in_order(tmp_path: Path):
    images = _images(10)
    write_cache(tmp_path / "c", images, list(range(10)), [str(i) for i in range(10)])
    cache = load_cache(tmp_path / "c")
    got = [b for b in cache.batches(3)]
    assert [len(lbl) for _, lbl in got] == [3, 3, 3, 1]
    assert np.array_equal(np.concatenate([im.numpy() for im, _ in got]), images)
    picked = list(cache.batches(2, indices=[9, 0, 4]))
    assert np.concatenate([lbl.numpy() for _, lbl in picked]).tolist() == [9, 0, 4]
    assert np.array_equal(picked[0][0].numpy(), images[[9, 0]])


def test_failed_build_leaves_nothing(tmp_path: Path):
    with pytest.raises(RuntimeError):
        with CacheWriter(tmp_path / "c", 3, 8, ["a"]) as writer:
            writer.add(0, _images(1)[0], 0)
            raise RuntimeError("decoder crashed")
    with pytest.raises(CacheError, match="2 of 3 images were never written"):
        with CacheWriter(tmp_path / "c", 3, 8, ["a"]) as writer:
            writer.add(0, _images(1)[0], 0)
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_are_named(tmp_path: Path):
    with pytest.raises(CacheError, match=r"image 0 \(x.png\) has label 4, outside 0..1"):
        with CacheWriter(tmp_path / "c", 1, 8, ["a", "b"]) as writer:
            writer.add(0, _images(1)[0], 4, source="x.png")
    with pytest.raises(CacheError, match="has shape"):
        with CacheWriter(tmp_path / "c", 1, 8, ["a"]) as writer:
            writer.add(0, _images(1, size=9)[0], 0)


def test_incomplete_or_foreign_cache_is_refused(tmp_path: Path):
    write_cache(tmp_path / "c", _images(2), [0, 0], ["a"])
    (tmp_path / "c" / "labels.npy").unlink()
    with pytest.raises(CacheError, match=r"c: not a complete evaluation cache \(missing labels.npy\)"):
        load_cache(tmp_path / "c")
    write_cache(tmp_path / "d", _images(2), [0, 0], ["a"])
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    meta["format"] = "something-else"
    (tmp_path / "d" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CacheError, match="cache format 'something-else'"):
        load_cache(tmp_path / "d")


def test_caches_by_name_keep_order_and_refuse_two_of_one_name(tmp_path):
    write_cache(tmp_path / "b" / "photo", _images(2), [0, 1], ["x", "y"])
    write_cache(tmp_path / "a" / "sketch", _images(2), [0, 1], ["x", "y"])
    write_cache(tmp_path / "c" / "photo", _images(2), [1, 0], ["x", "y"])
    caches = load_caches_by_name([tmp_path / "b" / "photo", tmp_path / "a" / "sketch"])
    assert list(caches) == ["photo", "sketch"] and list(caches["photo"].labels) == [0, 1]
    with pytest.raises(ValueError, match=r"c/photo: dataset name 'photo' also used by .*b/photo"):
        load_caches_by_name([tmp_path / "b" / "photo", tmp_path / "c" / "photo"])
