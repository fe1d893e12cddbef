"""Fixture trees in the real on-disk layouts of the evaluation sets, with tiny images.

The layouts fix their folder counts (1000 or 200 classes), so the trees honour them; images
are 20x16 px or so, which keeps a 1000-folder tree well under a second to write.
"""

from __future__ import annotations

import io
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
