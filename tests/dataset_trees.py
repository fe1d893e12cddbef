"""Fixture trees in the real on-disk layouts of the evaluation sets, with tiny images.

The layouts fix their folder counts (1000 or 200 classes), so the trees honour them; images
are 20x16 px or so, which keeps a 1000-folder tree well under a second to write.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image


def wnids(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct WordNet-ID-shaped names, in a shuffled (not sorted) order."""
    rng = np.random.default_rng(seed)
    numbers = rng.choice(10**8, size=n, replace=False)
    return [f"n{x:08d}" for x in numbers]


def encode(array: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 array as an image file of ``fmt`` (optionally converted)."""
    image = Image.fromarray(array)
    if mode is not None:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


#: Variants that exercise the preprocessing: landscape/portrait, odd crop offsets, and the
#: image modes found in real sets (grey, palette, alpha, CMYK JPEG).
VARIANTS: tuple[tuple[int, int, str, str | None, str], ...] = (
    (16, 20, "PNG", None, ".png"),
    (20, 16, "JPEG", None, ".JPEG"),
    (16, 17, "PNG", None, ".png"),
    (23, 16, "JPEG", "L", ".jpg"),
    (16, 21, "PNG", "P", ".png"),
    (19, 18, "PNG", "RGBA", ".png"),
    (16, 22, "JPEG", "CMYK", ".jpeg"),
)


def make_tree(
    root: Path,
    folders: Sequence[str],
    images_per_folder: int | Sequence[int] = 1,
    seed: int = 0,
) -> list[Path]:
    """Create ``root/<folder>/img_<k>.<ext>`` with distinct random images cycling through
    :data:`VARIANTS`; returns the files written."""
    rng = np.random.default_rng(seed)
    counts = [images_per_folder] * len(folders) if isinstance(images_per_folder, int) else list(images_per_folder)
    written = []
    variant = 0
    for folder, count in zip(folders, counts):
        (root / folder).mkdir(parents=True)
        for k in range(count):
            h, w, fmt, mode, ext = VARIANTS[variant % len(VARIANTS)]
            variant += 1
            path = root / folder / f"img_{k}{ext}"
            path.write_bytes(encode(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), fmt, mode))
            written.append(path)
    return written


def make_flat_tree(root: Path, folders: Sequence[str]) -> None:
    """One identical tiny PNG per folder: the cheapest tree that passes the layout checks."""
    payload = encode(np.full((16, 20, 3), 128, dtype=np.uint8), "PNG")
    for folder in folders:
        (root / folder).mkdir(parents=True)
        (root / folder / "img.png").write_bytes(payload)


def make_objectnet_tree(root: Path, total: int, decoy_folders: Sequence[str] = ("air_freshener", "ziploc_bag"),
                        seed: int = 0) -> list[Path]:
    """``objectnet-1.0/images``'s shape: a folder per ObjectNet class (the 113 mapped ones, plus
    ``decoy_folders`` of the other 200, which must be ignored), ``total`` PNG images spread over
    the 113. Every image has a 2-pixel red border around a random interior, as ObjectNet's do.
    Most files are hard links to a few distinct images, so 18,574 of them take a second."""
    from interpsharp.class_maps import objectnet_classes

    rng = np.random.default_rng(seed)
    folders = objectnet_classes().folders
    distinct = []
    for k in range(8):
        h, w = 20 + k, 24 - k
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        pixels[:2], pixels[-2:], pixels[:, :2], pixels[:, -2:] = (255, 0, 0), (255, 0, 0), (255, 0, 0), (255, 0, 0)
        distinct.append(encode(pixels, "PNG"))
    sources = []
    for k, payload in enumerate(distinct):
        path = root.parent / f".objectnet-source-{k}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        sources.append(path)
    written = []
    counts = np.full(len(folders), total // len(folders))
    counts[: total - counts.sum()] += 1
    for i, (folder, count) in enumerate(zip(folders, counts)):
        (root / folder).mkdir(parents=True)
        for k in range(int(count)):
            path = root / folder / f"{folder}_{k:04d}.png"
            os.link(sources[(i + k) % len(sources)], path)
            written.append(path)
    for folder in decoy_folders:
        (root / folder).mkdir(parents=True)
        os.link(sources[0], root / folder / "decoy.png")
    return written
