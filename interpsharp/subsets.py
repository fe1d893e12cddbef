"""Which images a measurement uses: stable seeds, fixed evaluation subsets, and the
selection / held-out split of the main OOD set.

Everything here ranks images by a hash of ``(purpose, seed, index)`` instead of drawing from a
NumPy or torch generator, whose streams may change between library versions: a recorded
``(seed, fraction)`` or ``(n_total, m, seed)`` names the same images forever, on every machine.

Why a selection / held-out split (SPEC, "Selection and scoring use different images"): the
pipeline *chooses* things on the main OOD set -- alpha* (the best point of a path) and the
straggler layers that Algorithm 1 prunes. Scoring a choice on the images it was made on is
optimistic (the maximum of noisy accuracies is biased upwards), so choices are made on the
selection part and gains are reported on the held-out part, as model soups chooses on held-out
data. The split is stratified by class so both parts keep the set's class balance.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

#: Names of the two parts of a split, as written in the ``split`` column of every path table;
#: ``all`` is the whole set.
ALL, SELECTION, HELDOUT = "all", "selection", "heldout"


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts``; the same on every machine and Python run (sha256, not the
    salted built-in ``hash``)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _hash_keys(purpose: str, seed: int, indices: np.ndarray) -> np.ndarray:
    return np.array([stable_seed(purpose, seed, int(i)) for i in indices], dtype=np.int64)


def select_subset(n_total: int, m: int | None, seed: int, within: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of a fixed evaluation subset: ``m`` images of ``range(n_total)``, or of
    ``within`` when given (e.g. the selection part of a split); all of them if ``m`` is None or
    at least their number.

    Images are ranked by a hash of ``(seed, index)``, so subsets of different ``m`` with one
    seed are nested, and a subset drawn ``within`` a part is the same images as the whole
    set's ranking restricted to that part.
    """
    if n_total < 1:
        raise ValueError(f"cannot pick an evaluation subset from {n_total} samples")
    pool = np.arange(n_total) if within is None else np.asarray(within, dtype=np.int64)
    if len(pool) == 0:
        raise ValueError("cannot pick an evaluation subset from an empty set of candidates")
    if pool.min() < 0 or pool.max() >= n_total:
        raise IndexError(f"candidate indices must lie in 0..{n_total - 1}")
    if m is None or m >= len(pool):
        return np.sort(pool)
    if m < 1:
        raise ValueError(f"subset size m must be >= 1, got {m}")
    keys = _hash_keys("subset", seed, pool)
    return np.sort(pool[np.argsort(keys, kind="stable")[:m]])


@dataclass(frozen=True)
class SelectionSplit:
    """The two parts of a set, as sorted index arrays into it, and how they were drawn."""

    selection: np.ndarray
    heldout: np.ndarray
    fraction: float
    seed: int

    def parts(self) -> dict[str, np.ndarray]:
        """``{"selection": ..., "heldout": ...}``: the names every path table uses."""
        return {SELECTION: self.selection, HELDOUT: self.heldout}

    def selection_mask(self, n: int) -> np.ndarray:
        """Boolean mask of length ``n``: True on the selection part."""
        mask = np.zeros(n, dtype=bool)
        mask[self.selection] = True
        return mask


def selection_split(labels: np.ndarray, fraction: float, seed: int) -> SelectionSplit:
    """Split a set into a selection part and a held-out part, stratified by class.

    Of each class's ``n_c`` images, ``round(fraction * n_c)`` (half-up, at least one and at
    most ``n_c - 1`` when the class has two or more images, so every class is in both parts)
    with the smallest hash of ``("selection", seed, index)`` form the selection part; the rest
    are held out. Images that are their class's only one cannot be in both parts: they are
    pooled and split the same way as one group, so a set with one image per class (a small
    rehearsal, a 1-shot probe) still has a held-out part of the requested size.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"selection fraction must lie strictly between 0 and 1, got {fraction}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) < 2:
        raise ValueError(f"need a 1-d label array of at least 2 images to split, got shape {labels.shape}")
    keys = _hash_keys("selection", seed, np.arange(len(labels)))
    classes, counts = np.unique(labels, return_counts=True)
    groups = [np.flatnonzero(labels == label) for label in classes[counts > 1]]
    singletons = np.flatnonzero(np.isin(labels, classes[counts == 1]))
    if len(singletons):
        groups.append(singletons)
    chosen = []
    for members in groups:
        k = int(np.floor(fraction * len(members) + 0.5))
        k = min(max(k, 1), len(members) - 1) if len(members) > 1 else 1
        chosen.append(members[np.argsort(keys[members], kind="stable")[:k]])
    selection = np.sort(np.concatenate(chosen))
    heldout = np.setdiff1d(np.arange(len(labels)), selection, assume_unique=True)
    return SelectionSplit(selection=selection, heldout=heldout, fraction=float(fraction), seed=int(seed))
