"""Evaluation sets from their real on-disk layouts, turned into caches.

Each image file is read once: its bytes are hashed (sha256, for provenance) and decoded with
PIL, then preprocessed exactly as the WiSE-FT / model-soups evaluation does, i.e. torchvision's
``ImageFolder`` loader followed by CLIP's eval transform:

1. ``convert("RGB")`` first (``ImageFolder``'s ``pil_loader`` does it before any transform, so
   palette, grey and CMYK files are resampled as RGB, not in their own mode);
2. resize the shortest side to ``image_size`` with bicubic interpolation (torchvision's size
   arithmetic: the long side is ``int(size * long / short)``);
3. centre crop ``image_size`` (torchvision's offsets: ``int(round((W - size) / 2))``).

Normalisation is left to evaluation time (:mod:`interpsharp.data`).

Layouts are entries of :data:`LAYOUTS`, a registry: how many class folders, how they are
named and how a folder name becomes a label is data, not code paths.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import json
import os
import re
from dataclasses import dataclass
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from open_clip import IMAGENET_CLASSNAMES
from PIL import Image
from tqdm import tqdm

from interpsharp.data import CacheWriter

#: Bumped whenever the bytes a builder writes for the same input could change.
BUILDER_VERSION = 1

#: File endings read as images (torchvision's ``IMG_EXTENSIONS``); other files, e.g. the
#: README.txt that ships inside ImageNet-A, are ignored.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

_WNID = re.compile(r"^n\d{8}$")


class DatasetLayoutError(ValueError):
    """A dataset directory that does not have the expected layout; the message names the path."""


@dataclass(frozen=True)
class Layout:
    """How one evaluation set is arranged on disk.

    ``folder_kind`` is ``"wnid"`` (folders named by WordNet ID, label = position in sorted
    order, as ``ImageFolder`` assigns it) or ``"index"`` (folders named ``0``..``n-1``,
    label = the number, so folder ``10`` is class 10 and not the third in string order).
    ``subset_key`` names the entry of ``resources/imagenet_class_subsets.json`` that maps the
    set's classes onto the 1000 ImageNet classes, for 200-class sets.
    """

    name: str
    title: str
    num_classes: int
    folder_kind: str
    subset_key: str | None = None

    def folder_description(self) -> str:
        if self.folder_kind == "wnid":
            return f"{self.num_classes} WordNet-ID folders like n01498041/"
        return f"{self.num_classes} folders named 0 .. {self.num_classes - 1}"


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("imagenet", "ImageNet (val)", 1000, "wnid"),
        Layout("imagenet-sketch", "ImageNet-Sketch", 1000, "wnid"),
        Layout("imagenet-a", "ImageNet-A", 200, "wnid", subset_key="imagenet_a"),
        Layout("imagenet-r", "ImageNet-R", 200, "wnid", subset_key="imagenet_r"),
        Layout("imagenetv2", "ImageNetV2 (matched frequency)", 1000, "index"),
    )
}


@dataclass(frozen=True)
class DatasetPlan:
    """Every image a cache will hold, in cache order, with its label and the class metadata."""

    layout: Layout
    root: Path
    files: list[Path]
    labels: list[int]
    classnames: list[str]
    class_subset: list[int] | None
    num_found: int


def get_layout(name: str) -> Layout:
    """The registered layout called ``name``; an unknown name lists the known ones."""
    if name not in LAYOUTS:
        raise DatasetLayoutError(f"unknown dataset layout {name!r}; known layouts: {', '.join(LAYOUTS)}")
    return LAYOUTS[name]


def imagenet_class_subset(key: str) -> list[int]:
    """Indices into the 1000 ImageNet classes of a 200-class set (``imagenet_a``, ``imagenet_r``)."""
    text = importlib.resources.files("interpsharp.resources").joinpath("imagenet_class_subsets.json").read_text()
    subsets = json.loads(text)
    if key not in subsets:
        raise KeyError(f"imagenet_class_subsets.json has no entry {key!r}")
    return [int(i) for i in subsets[key]]


def _label_of_folders(layout: Layout, root: Path, folders: list[str]) -> list[tuple[str, int]]:
    """Check the class folder names and return ``(folder, label)`` in label order."""
    expected = f"expected {layout.folder_description()} for {layout.title}"
    if len(folders) != layout.num_classes:
        shown = ", ".join(sorted(folders)[:5]) + (" ..." if len(folders) > 5 else "")
        raise DatasetLayoutError(f"{root}: {expected}, found {len(folders)}" + (f" ({shown})" if folders else ""))
    if layout.folder_kind == "wnid":
        bad = sorted(f for f in folders if not _WNID.match(f))
        if bad:
            raise DatasetLayoutError(f"{root}: {expected}; these folders are not WordNet IDs: {', '.join(bad[:10])}")
        return [(folder, label) for label, folder in enumerate(sorted(folders))]
    canonical = {str(i) for i in range(layout.num_classes)}
    bad = sorted(f for f in folders if f not in canonical)
    if bad:
        raise DatasetLayoutError(f"{root}: {expected}; unexpected folder names: {', '.join(bad[:10])}")
    return sorted(((folder, int(folder)) for folder in folders), key=lambda item: item[1])


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def plan_dataset(
    layout: str | Layout,
    root: str | os.PathLike,
    max_per_class: int | None = None,
    limit: int | None = None,
) -> DatasetPlan:
    """List and label the images of ``root`` in ``layout``, checking the layout completely
    (folder count, folder names, no empty class) before anything is decoded.

    ``max_per_class`` keeps the first files of each class (sorted by name); ``limit`` then keeps
    ``limit`` images evenly spaced over the class-ordered list, so a quick subset still spans
    all classes. Both are deterministic: no seed is involved.
    """
    layout = get_layout(layout) if isinstance(layout, str) else layout
    root = Path(root)
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise DatasetLayoutError(f"{root}: {what}; expected the {layout.title} root with {layout.folder_description()}")
    for name, value in (("max_per_class", max_per_class), ("limit", limit)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be a positive number of images, got {value}")
    folders = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    files: list[Path] = []
    labels: list[int] = []
    num_found = 0
    for folder, label in _label_of_folders(layout, root, folders):
        images = _images_in(root / folder)
        if not images:
            raise DatasetLayoutError(
                f"{root / folder}: empty class folder (no {'/'.join(IMAGE_EXTENSIONS)} files); "
                f"every class of {layout.title} needs at least one image. Is the download complete?"
            )
        num_found += len(images)
        kept = images[:max_per_class] if max_per_class else images
        files.extend(kept)
        labels.extend([label] * len(kept))
    if limit is not None and limit < len(files):
        keep = np.unique(np.linspace(0, len(files) - 1, limit).round().astype(int))
        files = [files[i] for i in keep]
        labels = [labels[i] for i in keep]

    if layout.subset_key is None:
        classnames, class_subset = list(IMAGENET_CLASSNAMES), None
    else:
        class_subset = imagenet_class_subset(layout.subset_key)
        classnames = [IMAGENET_CLASSNAMES[i] for i in class_subset]
    if len(classnames) != layout.num_classes:
        raise DatasetLayoutError(f"{layout.name}: {len(classnames)} class names for {layout.num_classes} classes")
    return DatasetPlan(layout, root, files, labels, classnames, class_subset, num_found)


def resize_center_crop(image: Image.Image, image_size: int) -> Image.Image:
    """Resize the shortest side to ``image_size`` (bicubic), then centre crop a square.

    Same arithmetic as torchvision's ``Resize(image_size, BICUBIC)`` + ``CenterCrop`` on a PIL
    image (open_clip's eval transform), so cached pixels equal what model-soups feeds the model.
    """
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(image_size * long / short)
    new_w, new_h = (image_size, new_long) if width <= height else (new_long, image_size)
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.BICUBIC)
    left = int(round((new_w - image_size) / 2.0))
    top = int(round((new_h - image_size) / 2.0))
    return image.crop((left, top, left + image_size, top + image_size))


def load_image(path: Path, image_size: int) -> tuple[np.ndarray, str]:
    """Read one file: ``(3, S, S)`` uint8 RGB after preprocessing, and the sha256 of its bytes."""
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            rgb = image.convert("RGB")
        pixels = np.asarray(resize_center_crop(rgb, image_size), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DatasetLayoutError(f"{path}: unreadable image ({type(err).__name__}: {err}); re-download or remove it") from err
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)), hashlib.sha256(data).hexdigest()


def _decoded(plan: DatasetPlan, image_size: int, workers: int) -> Iterator[tuple[np.ndarray, str]]:
    """Decoded images in plan order; with ``workers > 1`` decoding runs in threads (PIL releases
    the GIL while decoding and resampling) and ``imap`` keeps the order."""
    load: Callable[[Path], tuple[np.ndarray, str]] = lambda p: load_image(p, image_size)  # noqa: E731
    if workers <= 1:
        yield from map(load, plan.files)
        return
    with ThreadPool(workers) as pool:
        yield from pool.imap(load, plan.files, chunksize=8)


def build_cache(
    layout: str,
    root: str | os.PathLike,
    out: str | os.PathLike,
    image_size: int = 224,
    max_per_class: int | None = None,
    limit: int | None = None,
    workers: int = 1,
    name: str | None = None,
    progress: bool = True,
) -> Path:
    """Decode an evaluation set laid out as ``layout`` under ``root`` into the cache ``out``.

    The cache's ``name`` (the ``dataset`` column of every result table) defaults to the layout
    name. Returns ``out``; nothing appears there unless every image was read.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    plan = plan_dataset(layout, root, max_per_class=max_per_class, limit=limit)
    meta = {
        "name": name or plan.layout.name,
        "layout": plan.layout.name,
        "root": str(plan.root.resolve()),
        "builder": "interpsharp.datasets",
        "builder_version": BUILDER_VERSION,
        "preprocess": "PIL convert RGB; resize shortest side bicubic; centre crop (torchvision arithmetic)",
        "max_per_class": max_per_class,
        "limit": limit,
        "subset_rule": "first files of each class by name, then evenly spaced over the class-ordered list",
        "num_found": plan.num_found,
    }
    out = Path(out)
    with CacheWriter(out, len(plan.files), image_size, plan.classnames, plan.class_subset, meta) as writer:
        decoded = _decoded(plan, image_size, workers)
        items = tqdm(decoded, total=len(plan.files), desc=f"decode {plan.layout.name}", unit="img", disable=not progress)
        for index, ((pixels, sha), path, label) in enumerate(zip(items, plan.files, plan.labels)):
            writer.add(index, pixels, label, source=path.relative_to(plan.root).as_posix(), sha256=sha)
    return out
