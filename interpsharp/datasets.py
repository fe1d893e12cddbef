"""Evaluation sets from their real on-disk layouts, turned into caches.

Each image file is read once: its bytes are hashed (sha256, for provenance) and decoded with
PIL, then preprocessed exactly as the WiSE-FT / model-soups evaluation does, i.e. torchvision's
``ImageFolder`` loader followed by CLIP's eval transform:

1. ``convert("RGB")`` first (``ImageFolder``'s ``pil_loader`` does it before any transform, so
   palette, grey and CMYK files are resampled as RGB, not in their own mode);
2. resize the shortest side to ``image_size`` with bicubic interpolation (torchvision's size
   arithmetic: the long side is ``int(size * long / short)``);
3. centre crop ``image_size`` (torchvision's offsets: ``int(round((W - size) / 2))``).

ObjectNet images first lose 2 pixels on every side (a red border), as WiSE-FT's loader does.
Normalisation is left to evaluation time (:mod:`interpsharp.data`).

Layouts are entries of :data:`LAYOUTS`, a registry: how many class folders, how they are
named and how a folder name becomes a label is data, not code paths. The ImageNet family and
ObjectNet have their classes fixed (relative to ImageNet-1k); ``imagefolder`` takes any
folders, named by a file or by themselves, and is related to the head's classes by name
(:mod:`interpsharp.class_maps`).
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

from interpsharp.class_maps import (
    OBJECTNET_IMAGES,
    ClassMapError,
    ClassRelation,
    folder_classname,
    objectnet_classes,
    read_class_mapping,
    read_classnames,
    relate_classes,
)
from interpsharp.data import CacheWriter

#: Bumped whenever the bytes a builder writes for the same input could change.
BUILDER_VERSION = 2

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
    order, as ``ImageFolder`` assigns it), ``"index"`` (folders named ``0``..``n-1``, label =
    the number, so folder ``10`` is class 10 and not the third in string order), ``"any"``
    (``imagefolder``: any folder names, label = position in sorted order) or ``"objectnet"``
    (ObjectNet's 313 folders, of which the 113 that overlap ImageNet are kept).
    ``subset_key`` names the entry of ``resources/imagenet_class_subsets.json`` that maps the
    set's classes onto the 1000 ImageNet classes, for 200-class sets. ``border`` pixels are
    cropped from every side before resizing; ``expected_images`` is the complete set's image
    count (of the kept classes), checked whatever ``limit`` keeps.
    """

    name: str
    title: str
    num_classes: int | None
    folder_kind: str
    subset_key: str | None = None
    border: int = 0
    expected_images: int | None = None

    def folder_description(self) -> str:
        if self.folder_kind == "wnid":
            return f"{self.num_classes} WordNet-ID folders like n01498041/"
        if self.folder_kind == "objectnet":
            return "ObjectNet's class folders like alarm_clock/ (objectnet-1.0/images/: 313, of which 113 are used)"
        if self.folder_kind == "any":
            return "one folder per class"
        return f"{self.num_classes} folders named 0 .. {self.num_classes - 1}"


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("imagenet", "ImageNet (val)", 1000, "wnid"),
        Layout("imagenet-sketch", "ImageNet-Sketch", 1000, "wnid"),
        Layout("imagenet-a", "ImageNet-A", 200, "wnid", subset_key="imagenet_a"),
        Layout("imagenet-r", "ImageNet-R", 200, "wnid", subset_key="imagenet_r"),
        Layout("imagenetv2", "ImageNetV2 (matched frequency)", 1000, "index"),
        Layout("objectnet", "ObjectNet (113 ImageNet classes)", 113, "objectnet", border=2, expected_images=OBJECTNET_IMAGES),
        Layout("imagefolder", "image folder", None, "any"),
    )
}


@dataclass(frozen=True)
class ClassSource:
    """Where an ``imagefolder`` set's class names come from and how they relate to the head's.

    ``classnames`` is a JSON file ``{folder: class name}`` (None: folder names, underscores as
    spaces); ``subset`` declares the set's classes a subset of the head's (matched by name);
    ``mapping`` is a JSON file ``{set class: [head classes]}`` (logits: max over the group).
    """

    classnames: str | os.PathLike | None = None
    subset: bool = False
    mapping: str | os.PathLike | None = None


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
    class_groups: list[list[int]] | None = None


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
    if layout.folder_kind == "objectnet":
        kept = objectnet_classes().folders
        missing = [f for f in kept if f not in set(folders)]
        if missing:
            raise DatasetLayoutError(f"{root}: {expected}; {len(missing)} of the 113 are missing: {', '.join(missing[:10])}")
        return [(folder, label) for label, folder in enumerate(kept)]
    if layout.folder_kind == "any":
        if not folders:
            raise DatasetLayoutError(f"{root}: {expected}; found no folders (images directly under the root are not read)")
        return [(folder, label) for label, folder in enumerate(sorted(folders))]
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


def _class_folders(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]


def layout_classes(
    layout: str | Layout,
    root: str | os.PathLike | None = None,
    classes: ClassSource = ClassSource(),
) -> list[str]:
    """The class names of a set in label order: fixed for the ImageNet family and ObjectNet,
    read from ``root``'s folders (or ``classes.classnames``) for ``imagefolder``."""
    layout = get_layout(layout) if isinstance(layout, str) else layout
    if layout.folder_kind == "objectnet":
        return objectnet_classes().names
    if layout.folder_kind != "any":
        return list(IMAGENET_CLASSNAMES) if layout.subset_key is None else [
            IMAGENET_CLASSNAMES[i] for i in imagenet_class_subset(layout.subset_key)]
    root = _existing_root(layout, root)
    folders = [folder for folder, _ in _label_of_folders(layout, root, _class_folders(root))]
    return read_classnames(classes.classnames, folders) if classes.classnames else [folder_classname(f) for f in folders]


def relate_to_head(
    layout: str | Layout,
    classnames: list[str],
    head_classnames: list[str] | None,
    classes: ClassSource = ClassSource(),
    name: str | None = None,
) -> ClassRelation:
    """How a set's classes (``classnames``, from :func:`layout_classes`) meet the head's.

    The ImageNet family and ObjectNet relate to ImageNet-1k by construction (all of it, a
    200-class subset, ObjectNet's 113 groups), so the head must be ImageNet-1k's; an
    ``imagefolder`` set is related by name (same classes, a declared subset, or a mapping).
    ``head_classnames=None`` means the set is the ID set: its classes are the head's.
    """
    layout = get_layout(layout) if isinstance(layout, str) else layout
    what = f"evaluation set {name or layout.name!r}"
    if layout.folder_kind == "any":
        head = classnames if head_classnames is None else head_classnames
        mapping = read_class_mapping(classes.mapping) if classes.mapping else None
        return relate_classes(classnames, head, subset=classes.subset, mapping=mapping, what=what)
    if classes != ClassSource():
        raise ClassMapError(f"{what}: layout {layout.name!r} has its classes fixed; classnames, subset and class "
                            f"mapping apply to layout 'imagefolder' only")
    if head_classnames is not None and list(head_classnames) != list(IMAGENET_CLASSNAMES):
        raise ClassMapError(
            f"{what} ({layout.title}) is scored against ImageNet-1k's 1000 classes, but the ID set has "
            f"{len(head_classnames)} other classes; evaluate it as layout 'imagefolder' with a class_mapping instead"
        )
    labels = list(range(len(classnames)))
    if layout.folder_kind == "objectnet":
        return ClassRelation(classnames, labels, class_groups=objectnet_classes().imagenet_groups)
    if layout.subset_key is not None:
        return ClassRelation(classnames, labels, class_subset=imagenet_class_subset(layout.subset_key))
    return ClassRelation(classnames, labels)


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _existing_root(layout: Layout, root: str | os.PathLike | None) -> Path:
    if root is None:
        raise DatasetLayoutError(f"{layout.title}: no folder given; expected {layout.folder_description()}")
    root = Path(root)
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise DatasetLayoutError(f"{root}: {what}; expected the {layout.title} root with {layout.folder_description()}")
    return root


def plan_dataset(
    layout: str | Layout,
    root: str | os.PathLike,
    max_per_class: int | None = None,
    limit: int | None = None,
    head_classnames: list[str] | None = None,
    classes: ClassSource = ClassSource(),
    name: str | None = None,
) -> DatasetPlan:
    """List and label the images of ``root`` in ``layout``, checking the layout completely
    (folder count, folder names, no empty class, the complete set's image count where it is
    known) and the classes against the head's (``head_classnames``; None: the set's own)
    before anything is decoded.

    ``max_per_class`` keeps the first files of each class (sorted by name); ``limit`` then keeps
    ``limit`` images evenly spaced over the class-ordered list, so a quick subset still spans
    all classes. Both are deterministic: no seed is involved.
    """
    layout = get_layout(layout) if isinstance(layout, str) else layout
    root = _existing_root(layout, root)
    for key, value in (("max_per_class", max_per_class), ("limit", limit)):
        if value is not None and value < 1:
            raise ValueError(f"{key} must be a positive number of images, got {value}")
    relation = relate_to_head(layout, layout_classes(layout, root, classes), head_classnames, classes, name)
    files: list[Path] = []
    labels: list[int] = []
    num_found = 0
    for folder, label in _label_of_folders(layout, root, _class_folders(root)):
        images = _images_in(root / folder)
        if not images:
            raise DatasetLayoutError(
                f"{root / folder}: empty class folder (no {'/'.join(IMAGE_EXTENSIONS)} files); "
                f"every class of {layout.title} needs at least one image. Is the download complete?"
            )
        num_found += len(images)
        kept = images[:max_per_class] if max_per_class else images
        files.extend(kept)
        labels.extend([relation.labels[label]] * len(kept))
    if layout.expected_images is not None and num_found != layout.expected_images:
        raise DatasetLayoutError(
            f"{root}: {num_found} images in the {layout.num_classes} classes used, but the complete {layout.title} has "
            f"{layout.expected_images}; a partial download or extraction gives plausible but wrong accuracies. "
            f"Re-extract the dataset"
        )
    if limit is not None and limit < len(files):
        keep = np.unique(np.linspace(0, len(files) - 1, limit).round().astype(int))
        files = [files[i] for i in keep]
        labels = [labels[i] for i in keep]
    if layout.num_classes is not None and len(relation.classnames) != layout.num_classes:
        raise DatasetLayoutError(f"{layout.name}: {len(relation.classnames)} class names for {layout.num_classes} classes")
    return DatasetPlan(layout, root, files, labels, relation.classnames, relation.class_subset, num_found,
                       relation.class_groups)


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


def load_image(path: Path, image_size: int, border: int = 0) -> tuple[np.ndarray, str]:
    """Read one file: ``(3, S, S)`` uint8 RGB after preprocessing, and the sha256 of its bytes.
    ``border`` pixels go from every side first (ObjectNet's red frame, as WiSE-FT's ``crop``)."""
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            rgb = image.convert("RGB")
        if border:
            if min(rgb.size) <= 2 * border:
                raise ValueError(f"image of {rgb.size} px is too small to crop a {border}-pixel border")
            rgb = rgb.crop((border, border, rgb.size[0] - border, rgb.size[1] - border))
        pixels = np.asarray(resize_center_crop(rgb, image_size), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DatasetLayoutError(f"{path}: unreadable image ({type(err).__name__}: {err}); re-download or remove it") from err
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)), hashlib.sha256(data).hexdigest()


def _decoded(plan: DatasetPlan, image_size: int, workers: int) -> Iterator[tuple[np.ndarray, str]]:
    """Decoded images in plan order; with ``workers > 1`` decoding runs in threads (PIL releases
    the GIL while decoding and resampling) and ``imap`` keeps the order."""
    load: Callable[[Path], tuple[np.ndarray, str]] = lambda p: load_image(p, image_size, plan.layout.border)  # noqa: E731
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
    head_classnames: list[str] | None = None,
    classes: ClassSource = ClassSource(),
) -> Path:
    """Decode an evaluation set laid out as ``layout`` under ``root`` into the cache ``out``.

    The cache's ``name`` (the ``dataset`` column of every result table) defaults to the layout
    name. ``head_classnames`` are the classes of the head it will be scored with (the ID
    set's; None: the set's own); ``classes`` says how an ``imagefolder`` set names and relates
    its classes. Returns ``out``; nothing appears there unless every image was read.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    plan = plan_dataset(layout, root, max_per_class=max_per_class, limit=limit, head_classnames=head_classnames,
                        classes=classes, name=name)
    meta = {
        "name": name or plan.layout.name,
        "layout": plan.layout.name,
        "root": str(plan.root.resolve()),
        "builder": "interpsharp.datasets",
        "builder_version": BUILDER_VERSION,
        "preprocess": "PIL convert RGB; "
        + (f"crop {plan.layout.border} px from every side; " if plan.layout.border else "")
        + "resize shortest side bicubic; centre crop (torchvision arithmetic)",
        "max_per_class": max_per_class,
        "limit": limit,
        "subset_rule": "first files of each class by name, then evenly spaced over the class-ordered list",
        "num_found": plan.num_found,
        "class_groups": plan.class_groups,
    }
    out = Path(out)
    with CacheWriter(out, len(plan.files), image_size, plan.classnames, plan.class_subset, meta) as writer:
        decoded = _decoded(plan, image_size, workers)
        items = tqdm(decoded, total=len(plan.files), desc=f"decode {plan.layout.name}", unit="img", disable=not progress)
        for index, ((pixels, sha), path, label) in enumerate(zip(items, plan.files, plan.labels)):
            writer.add(index, pixels, label, source=path.relative_to(plan.root).as_posix(), sha256=sha)
    return out
