"""interpsharp.subsets: stable subsets and the stratified selection / held-out split."""

from __future__ import annotations

import numpy as np
import pytest

from interpsharp.subsets import select_subset, selection_split, stable_seed


def test_stable_seed_is_a_fixed_function_of_its_parts():
    # sha256("subset\x1f0\x1f0"), first 8 bytes little-endian, shifted right by one: a value
    # computed once with hashlib outside the library, so a change of hashing breaks this test.
    import hashlib

    digest = hashlib.sha256(b"subset\x1f0\x1f0").digest()
    assert stable_seed("subset", 0, 0) == int.from_bytes(digest[:8], "little") >> 1
    assert stable_seed("subset", 0, 1) != stable_seed("subset", 1, 0)
    assert 0 <= stable_seed("x") < 2**63


def test_select_subset_is_stable_sorted_and_nested():
    a = select_subset(1000, 100, seed=0)
    assert len(a) == 100 and len(set(a)) == 100 and (np.diff(a) > 0).all() and a.min() >= 0 and a.max() < 1000
    np.testing.assert_array_equal(a, select_subset(1000, 100, seed=0))
    assert not np.array_equal(a, select_subset(1000, 100, seed=1))
    assert set(select_subset(1000, 50, seed=0)) <= set(a)
    np.testing.assert_array_equal(select_subset(7, None, 0), np.arange(7))
    np.testing.assert_array_equal(select_subset(7, 10, 0), np.arange(7))
    with pytest.raises(ValueError, match="m must be"):
        select_subset(7, 0, 0)


def test_subset_within_a_part_is_the_whole_rankings_restriction():
    within = np.arange(0, 1000, 3)
    part = select_subset(1000, 40, seed=2, within=within)
    assert set(part) <= set(within) and len(part) == 40
    # Independent computation: rank every candidate by its hash, keep the 40 smallest.
    keys = {i: stable_seed("subset", 2, int(i)) for i in within}
    expected = sorted(sorted(within, key=lambda i: keys[i])[:40])
    np.testing.assert_array_equal(part, expected)
    np.testing.assert_array_equal(select_subset(1000, None, 0, within=within[::-1]), within)
    with pytest.raises(IndexError):
        select_subset(10, 2, 0, within=np.array([3, 10]))


def test_selection_split_is_a_stratified_partition():
    labels = np.repeat(np.arange(10), [7, 8, 9, 10, 11, 2, 1, 30, 5, 6])
    split = selection_split(labels, fraction=0.5, seed=0)
    assert len(np.intersect1d(split.selection, split.heldout)) == 0
    np.testing.assert_array_equal(np.union1d(split.selection, split.heldout), np.arange(len(labels)))
    for label in range(10):
        n_c = int((labels == label).sum())
        in_selection = int((labels[split.selection] == label).sum())
        if n_c == 1:
            assert in_selection == 1
        else:
            assert in_selection == min(max(int(np.floor(0.5 * n_c + 0.5)), 1), n_c - 1)
            assert in_selection >= 1 and n_c - in_selection >= 1
    mask = split.selection_mask(len(labels))
    assert mask.sum() == len(split.selection) and not mask[split.heldout].any()
    assert set(split.parts()) == {"selection", "heldout"}


def test_selection_split_depends_on_seed_and_fraction_only():
    labels = np.arange(400) % 4
    a = selection_split(labels, 0.5, seed=0)
    np.testing.assert_array_equal(a.selection, selection_split(labels, 0.5, seed=0).selection)
    assert not np.array_equal(a.selection, selection_split(labels, 0.5, seed=1).selection)
    quarter = selection_split(labels, 0.25, seed=0)
    assert len(quarter.selection) == 100
    # The same ranking: a smaller fraction's selection lies inside a larger one's.
    assert set(quarter.selection) <= set(a.selection)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="strictly between"):
            selection_split(labels, bad, 0)


@pytest.mark.parametrize("fraction", [0.05, 0.95])
def test_every_class_with_two_images_is_in_both_parts_at_extreme_fractions(fraction):
    labels = np.repeat(np.arange(4), [2, 3, 5, 40])
    split = selection_split(labels, fraction, seed=0)
    for label in range(4):
        assert (labels[split.selection] == label).any() and (labels[split.heldout] == label).any()


def test_classes_with_one_image_are_split_as_one_pool():
    """One image per class (a rehearsal-sized set) still gives a held-out part of the requested
    size; classes with more images keep both parts; the pool's share follows the fraction."""
    labels = np.concatenate([np.arange(200), np.repeat([500, 501], 4)])
    split = selection_split(labels, fraction=0.5, seed=3)
    single = np.arange(200)
    assert len(np.intersect1d(split.selection, single)) == 100
    assert len(np.intersect1d(split.heldout, single)) == 100
    for label in (500, 501):
        members = np.flatnonzero(labels == label)
        assert len(np.intersect1d(split.selection, members)) == 2
    assert len(np.union1d(split.selection, split.heldout)) == len(labels)
    lone = selection_split(np.array([7, 8, 9]), fraction=0.3, seed=0)
    assert len(lone.selection) == 1 and len(lone.heldout) == 2
