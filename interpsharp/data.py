"""Evaluation-set caches: images decoded once, loaded memory-mapped for every evaluation.

Model-soups re-decodes every JPEG on every pass (~230 images/s per CPU core); an
interpolation study evaluates each image dozens of times, so we decode once. A cache is a
directory:

- ``images.npy``  uint8 ``(N, 3, H, W)`` after the model's resize and centre crop,
  memory-mapped on load so a 50k-image set need not fit in RAM;
- ``labels.npy``  int64 ``(N,)``, indices into ``classnames``;
- ``sources.tsv`` one row per image: source file, its sha256, its label;
- ``meta.json``   format tag, class names, the class-subset indices into the head's classes
  for subset sets like ImageNet-A's 200 (else null), the class groups of mapped sets like
  ObjectNet's (else null), image size and free-form provenance (seeds...).

Normalisation is not stored: it happens at evaluation time, on the device.
A cache is written into a temporary sibling directory and renamed into place only when
complete, so a half-written cache never looks finished.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:  # torch is imported where batches are made: jobs that only read a cache's
    import torch   # labels (held-out gains, splits) start seconds faster without it

CACHE_FORMAT = "interpsharp-cache/1"
_FILES = ("images.npy", "labels.npy", "sources.tsv", "meta.json")


class CacheError(ValueError):
    """A cache directory that is missing, incomplete or inconsistent."""


@dataclass
class EvalCache:
    """A loaded cache; ``images`` is a read-only memory map."""

    path: Path
    images: np.ndarray
    labels: np.ndarray
    classnames: list[str]
    class_subset: list[int] | None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def name(self) -> str:
        return str(self.meta.get("name", self.path.name))

    @property
    def class_groups(self) -> list[list[int]] | None:
        """Per class of the set, the head classes whose maximum logit is its logit (ObjectNet),
        or None (see :mod:`interpsharp.class_maps`)."""
        return self.meta.get("class_groups")

    def batches(self, batch_size: int, indices: Sequence[int] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(uint8 images, int64 labels)`` batches, in order (or over ``indices``)."""
        import torch

        order = np.arange(len(self)) if indices is None else np.asarray(indices)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            contiguous = len(idx) > 0 and idx[-1] - idx[0] == len(idx) - 1 and np.all(np.diff(idx) == 1)
            imgs = self.images[idx[0]:idx[-1] + 1] if contiguous else self.images[idx]
            # One copy out of the read-only memory map; torch needs writable memory.
            yield torch.from_numpy(np.array(imgs)), torch.from_numpy(self.labels[idx])


class CacheWriter:
    """Fill a cache image by image (for builders that decode files one at a time).

    Use as a context manager; the cache appears at ``path`` only if the block completes and
    every slot was filled.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        num_images: int,
        image_size: int,
        classnames: Sequence[str],
        class_subset: Sequence[int] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.num_images = num_images
        self.image_size = image_size
        self.classnames = list(classnames)
        self.class_subset = None if class_subset is None else [int(i) for i in class_subset]
        if self.class_subset is not None and len(self.class_subset) != len(self.classnames):
            raise CacheError(f"{len(self.class_subset)} subset indices for {len(self.classnames)} class names")
        self.meta = dict(meta or {})
        self._filled = np.zeros(num_images, dtype=bool)
        self._sources: list[tuple[str, str]] = [("", "")] * num_images

    def __enter__(self) -> "CacheWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent))
        shape = (self.num_images, 3, self.image_size, self.image_size)
        self._images = np.lib.format.open_memmap(self._tmp / "images.npy", mode="w+", dtype=np.uint8, shape=shape)
        self._labels = np.full(self.num_images, -1, dtype=np.int64)
        return self

    def add(self, index: int, image: np.ndarray, label: int, source: str = "", sha256: str = "") -> None:
        """Store one ``(3, H, W)`` uint8 image (or ``(H, W, 3)``, transposed here)."""
        if image.dtype != np.uint8:
            raise CacheError(f"image {index} ({source or 'in memory'}) has dtype {image.dtype}, expected uint8")
        if image.ndim == 3 and image.shape[-1] == 3 and image.shape[0] != 3:
            image = image.transpose(2, 0, 1)
        if image.shape != self._images.shape[1:]:
            raise CacheError(f"image {index} ({source or 'in memory'}) has shape {image.shape}, expected {self._images.shape[1:]}")
        if not 0 <= label < len(self.classnames):
            raise CacheError(f"image {index} ({source or 'in memory'}) has label {label}, outside 0..{len(self.classnames) - 1}")
        self._images[index] = image
        self._labels[index] = label
        self._sources[index] = (source, sha256)
        self._filled[index] = True

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                if not self._filled.all():
                    raise CacheError(f"{self.path}: {int((~self._filled).sum())} of {self.num_images} images were never written")
                self._finish()
        finally:
            if self._tmp.exists():
                shutil.rmtree(self._tmp, ignore_errors=True)

    def _finish(self) -> None:
        self._images.flush()
        del self._images
        np.save(self._tmp / "labels.npy", self._labels)
        with open(self._tmp / "sources.tsv", "w") as fh:
            fh.write("source\tsha256\tlabel\n")
            for (src, sha), label in zip(self._sources, self._labels):
                fh.write(f"{src}\t{sha}\t{label}\n")
        meta = {
            "format": CACHE_FORMAT,
            "name": self.meta.pop("name", self.path.name),
            "num_images": self.num_images,
            "image_size": self.image_size,
            "classnames": self.classnames,
            "class_subset": self.class_subset,
            **self.meta,
        }
        (self._tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self._tmp, self.path)


def write_cache(
    path: str | os.PathLike,
    images: np.ndarray,
    labels: Sequence[int],
    classnames: Sequence[str],
    class_subset: Sequence[int] | None = None,
    sources: Sequence[tuple[str, str]] | None = None,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write a whole cache from in-memory arrays (``images`` uint8 ``(N, 3, H, W)``)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise CacheError(f"images must be (N, 3, H, H), got {images.shape}")
    with CacheWriter(path, len(images), images.shape[2], classnames, class_subset, meta) as writer:
        for i, (image, label) in enumerate(zip(images, labels)):
            src, sha = sources[i] if sources is not None else ("", "")
            writer.add(i, image, int(label), src, sha)


def load_cache(path: str | os.PathLike) -> EvalCache:
    """Open a cache memory-mapped; a missing or inconsistent cache is an error naming the path."""
    path = Path(path)
    missing = [f for f in _FILES if not (path / f).is_file()]
    if missing:
        raise CacheError(f"{path}: not a complete evaluation cache (missing {', '.join(missing)}); rebuild it with 'interpsharp prepare-data'")
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("format") != CACHE_FORMAT:
        raise CacheError(f"{path}: cache format {meta.get('format')!r}, expected {CACHE_FORMAT!r}; rebuild it")
    images = np.load(path / "images.npy", mmap_mode="r")
    labels = np.load(path / "labels.npy")
    if len(images) != len(labels) or len(labels) != meta["num_images"]:
        raise CacheError(f"{path}: {len(images)} images, {len(labels)} labels, meta says {meta['num_images']}")
    return EvalCache(
        path=path,
        images=images,
        labels=labels,
        classnames=list(meta["classnames"]),
        class_subset=meta.get("class_subset"),
        meta=meta,
    )


def load_caches_by_name(paths: Iterable[str | os.PathLike]) -> dict[str, EvalCache]:
    """Caches keyed by their dataset name (the tables' ``dataset`` column), in the given order;
    two caches of one name would write one set's rows under the other's, so that is an error
    naming both folders."""
    caches: dict[str, EvalCache] = {}
    for path in paths:
        cache = load_cache(path)
        if cache.name in caches:
            raise ValueError(f"{path}: dataset name {cache.name!r} also used by {caches[cache.name].path}")
        caches[cache.name] = cache
    return caches
