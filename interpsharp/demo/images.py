"""Procedural shape images: the demo world's stand-in for ImageNet and its shifted test sets.

Each image shows one large shape of a class (circle, square, ...) drawn in a *style* that
mirrors one of the paper's distribution shifts: ``photo`` is the in-distribution set (like
ImageNet), ``photo2`` a re-drawn photo set with fresh seeds and slightly different parameters
(like ImageNetV2), ``sketch`` outlines only (like ImageNet-Sketch), ``texture`` patterned fill
and background (like ImageNet-R), ``clutter`` distractors, occlusion and noise (the hard set,
like ImageNet-A).

Why shapes are drawn on a 4x canvas and box-averaged down: PIL draws polygons without
antialiasing, and hard pixel edges would make the 32 px images trivially separable by
aliasing artefacts instead of by shape.

Determinism: image ``i`` of a set depends only on ``(seed, i)`` (its own numpy generator), so
a set is reproducible bit for bit and a larger set extends a smaller one. Labels cycle
``i % num_classes``, so every prefix whose length is a multiple of the class count is
exactly balanced (evaluation subsets are often prefixes).
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from interpsharp.data import write_cache

CLASSNAMES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross", "heart", "hexagon", "arrow", "crescent", "diamond",
)

#: Named fill colours (RGB); captions name them ("a photo of a red star").
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 40, 40),
    "green": (40, 150, 60),
    "blue": (40, 80, 210),
    "yellow": (230, 195, 30),
    "orange": (235, 125, 20),
    "purple": (130, 50, 165),
    "pink": (235, 110, 170),
    "brown": (120, 75, 35),
}

PATTERNS: tuple[str, ...] = ("striped", "checkered", "dotted")

#: Drawing happens on a canvas this many times larger than the output, then box-averaged.
SUPERSAMPLE = 4

GENERATOR_VERSION = "interpsharp-demo-shapes/1"


@dataclass(frozen=True)
class StyleParams:
    """How one style draws an image; recorded in every cache's ``meta.json``.

    Sizes are fractions of the image side (``scale`` is the shape's radius), widths are in
    canvas pixels, ``blur`` and ``noise`` act on the final image (pixels, 0-255 units).
    """

    scale: tuple[float, float] = (0.28, 0.42)
    rotation: float = 0.5
    background: str = "plain"  # plain (one colour, channels in background_range) | white | pattern
    background_range: tuple[int, int] = (175, 255)
    fill: str = "solid"  # solid | outline | pattern
    outline_width: tuple[int, int] = (5, 8)
    colour_jitter: int = 20
    blur: float = 0.0
    distractors: tuple[int, int] = (0, 0)
    distractor_scale: tuple[float, float] = (0.08, 0.16)
    occluder: bool = False
    noise: float = 0.0


STYLES: dict[str, StyleParams] = {
    "photo": StyleParams(),
    "photo2": StyleParams(scale=(0.24, 0.38), rotation=0.7, background_range=(140, 255), colour_jitter=35, blur=0.6),
    "sketch": StyleParams(background="white", fill="outline"),
    "texture": StyleParams(background="pattern", fill="pattern"),
    "clutter": StyleParams(scale=(0.24, 0.38), distractors=(2, 4), occluder=True, noise=18.0),
}


@dataclass(frozen=True)
class ImageAttributes:
    """What a caption may say about an image besides its class."""

    colour: str
    pattern: str | None = None


@dataclass
class GeneratedImages:
    """A generated set: uint8 images ``(N, 3, H, W)``, labels, and per-image attributes."""

    images: np.ndarray
    labels: np.ndarray
    attributes: list[ImageAttributes]
    style: str
    seed: int


def _unit_polygon(classname: str) -> np.ndarray:
    """Vertices ``(K, 2)`` of a class's shape, centred, radius about 1, y pointing down."""
    def ring(n: int, radius: float = 1.0, start: float = -np.pi / 2) -> np.ndarray:
        t = start + 2 * np.pi * np.arange(n) / n
        return radius * np.stack([np.cos(t), np.sin(t)], axis=1)

    if classname == "circle":
        return ring(48)
    if classname == "square":
        return np.array([[-0.8, -0.8], [0.8, -0.8], [0.8, 0.8], [-0.8, 0.8]])
    if classname == "triangle":
        return ring(3) + [0.0, 0.2]
    if classname == "star":
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return ring(10) * radii[:, None]
    if classname == "cross":
        a, b = 0.3, 0.95
        return np.array([[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b],
                         [-a, a], [-b, a], [-b, -a], [-a, -a]])
    if classname == "heart":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return np.stack([x, y + 2.5], axis=1) / 16.5
    if classname == "hexagon":
        return ring(6, 0.95, start=0.0)
    if classname == "arrow":
        return np.array([[-0.95, -0.22], [0.2, -0.22], [0.2, -0.6], [0.95, 0.0], [0.2, 0.6], [0.2, 0.22],
                         [-0.95, 0.22]])
    if classname == "crescent":
        # Outer circle r=1 minus a circle r=0.85 centred at x=0.45 (they meet at x=0.533).
        outer_start = np.arctan2(0.8459, 0.5333)
        inner_start = np.arctan2(0.8459, 0.5333 - 0.45)
        t_out = np.linspace(outer_start, 2 * np.pi - outer_start, 36)
        t_in = np.linspace(2 * np.pi - inner_start, inner_start, 28)
        outer = np.stack([np.cos(t_out), np.sin(t_out)], axis=1)
        inner = np.stack([0.45 + 0.85 * np.cos(t_in), 0.85 * np.sin(t_in)], axis=1)
        return np.concatenate([outer, inner]) + [0.25, 0.0]
    if classname == "diamond":
        return np.array([[0.0, -1.0], [0.55, 0.0], [0.0, 1.0], [-0.55, 0.0]])
    raise KeyError(f"unknown shape class {classname!r}; known: {', '.join(CLASSNAMES)}")


_POLYGONS = {name: _unit_polygon(name) for name in CLASSNAMES}


def _placed(rng: np.random.Generator, classname: str, canvas: int, scale: tuple[float, float],
            rotation: float, anywhere: bool = False) -> list[tuple[float, float]]:
    """The class polygon at a random radius, rotation and position on the canvas."""
    radius = rng.uniform(*scale) * canvas
    angle = rng.uniform(-rotation, rotation)
    c, s = np.cos(angle), np.sin(angle)
    pts = _POLYGONS[classname] @ np.array([[c, s], [-s, c]]) * radius
    low, high = (0.0, canvas) if anywhere else (radius, canvas - radius)
    centre = rng.uniform(min(low, canvas / 2), max(high, canvas / 2), size=2)
    return [tuple(p) for p in pts + centre]


def _mask(canvas: int, points: list[tuple[float, float]], outline_width: int = 0) -> Image.Image:
    """Binary mask (PIL ``L``) of a filled polygon, or of its outline if a width is given."""
    img = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(img)
    if outline_width:
        draw.line(points + [points[0]], fill=255, width=outline_width, joint="curve")
    else:
        draw.polygon(points, fill=255)
    return img


@functools.lru_cache(maxsize=4)
def _grid(canvas: int) -> np.ndarray:
    """Pixel coordinates ``(2, canvas, canvas)``, built once per canvas size."""
    return np.mgrid[0:canvas, 0:canvas].astype(np.float32)


def _pattern(rng: np.random.Generator, kind: str, canvas: int, colour_a: tuple[int, ...],
             colour_b: tuple[int, ...]) -> Image.Image:
    """A two-colour pattern with random period, angle and phase."""
    period = rng.uniform(10, 20)
    angle = rng.uniform(0, np.pi)
    c, s = float(np.cos(angle)) / period, float(np.sin(angle)) / period
    yy, xx = _grid(canvas)
    u = xx * c + yy * s + float(rng.uniform())
    v = yy * c - xx * s + float(rng.uniform())
    if kind == "striped":
        on = (u % 1.0) < 0.5
    elif kind == "checkered":
        on = (np.floor(u) + np.floor(v)) % 2 == 0
    elif kind == "dotted":
        on = ((u % 1.0) - 0.5) ** 2 + ((v % 1.0) - 0.5) ** 2 < 0.09
    else:
        raise KeyError(f"unknown pattern {kind!r}; known: {', '.join(PATTERNS)}")
    palette = np.array([colour_b, colour_a], dtype=np.uint8)
    return Image.fromarray(palette[on.astype(np.uint8)], "RGB")


def _rgb(values: np.ndarray) -> tuple[int, int, int]:
    r, g, b = np.clip(np.round(values), 0, 255).astype(int)
    return int(r), int(g), int(b)


def _jittered(rng: np.random.Generator, rgb: tuple[int, int, int], amount: int) -> tuple[int, int, int]:
    return _rgb(np.asarray(rgb, dtype=np.float64) + rng.uniform(-amount, amount, 3))


def _background(rng: np.random.Generator, kind: str, canvas: int, brightness: tuple[int, int]) -> Image.Image:
    if kind == "plain":
        return Image.new("RGB", (canvas, canvas), _rgb(rng.uniform(*brightness, 3)))
    if kind == "white":
        return Image.new("RGB", (canvas, canvas), _rgb(np.full(3, rng.uniform(240, 255))))
    if kind == "pattern":
        kind = PATTERNS[rng.integers(len(PATTERNS))]
        return _pattern(rng, kind, canvas, _rgb(rng.uniform(170, 255, 3)), _rgb(rng.uniform(200, 255, 3)))
    raise KeyError(f"unknown background {kind!r}")


def render_image(style: str, label: int, rng: np.random.Generator, image_size: int = 32) -> tuple[np.ndarray, ImageAttributes]:
    """One ``(3, H, W)`` uint8 image of class ``label`` in ``style``, drawn from ``rng``."""
    if style not in STYLES:
        raise KeyError(f"unknown style {style!r}; known: {', '.join(STYLES)}")
    p = STYLES[style]
    canvas = image_size * SUPERSAMPLE
    classname = CLASSNAMES[label]
    img = _background(rng, p.background, canvas, p.background_range)

    for _ in range(rng.integers(p.distractors[0], p.distractors[1] + 1) if p.distractors[1] else 0):
        other = CLASSNAMES[(label + rng.integers(1, len(CLASSNAMES))) % len(CLASSNAMES)]
        colour = _jittered(rng, list(COLOURS.values())[rng.integers(len(COLOURS))], p.colour_jitter)
        img.paste(colour, mask=_mask(canvas, _placed(rng, other, canvas, p.distractor_scale, np.pi, anywhere=True)))

    colour_name = list(COLOURS)[rng.integers(len(COLOURS))]
    colour = _jittered(rng, COLOURS[colour_name], p.colour_jitter)
    pattern = None
    points = _placed(rng, classname, canvas, p.scale, p.rotation)
    if p.fill == "outline":
        width = int(rng.integers(p.outline_width[0], p.outline_width[1] + 1))
        colour_name, colour = "grey", _rgb(np.full(3, rng.uniform(60, 140)))
        img.paste(colour, mask=_mask(canvas, points, outline_width=width))
    elif p.fill == "pattern":
        pattern = PATTERNS[rng.integers(len(PATTERNS))]
        dark = _rgb(np.asarray(colour) * rng.uniform(0.2, 0.5))
        img.paste(_pattern(rng, pattern, canvas, colour, dark), mask=_mask(canvas, points))
    else:
        img.paste(colour, mask=_mask(canvas, points))

    if p.occluder:
        w, h = rng.uniform(0.15, 0.35, 2) * canvas
        x0, y0 = rng.uniform(0, canvas - w), rng.uniform(0, canvas - h)
        img.paste(_rgb(rng.uniform(0, 255, 3)), (int(x0), int(y0), int(x0 + w), int(y0 + h)))

    small = img.reduce(SUPERSAMPLE)
    if p.blur:
        small = small.filter(ImageFilter.GaussianBlur(p.blur))
    out = np.asarray(small)
    if p.noise:
        out = np.clip(np.round(out + rng.normal(0, p.noise, out.shape)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out.transpose(2, 0, 1)), ImageAttributes(colour=colour_name, pattern=pattern)


def generate(style: str, n: int, seed: int, image_size: int = 32, progress: bool = False) -> GeneratedImages:
    """``n`` images of ``style``; image ``i`` has label ``i % 10`` and its own generator ``(seed, i)``."""
    if style not in STYLES:
        raise KeyError(f"unknown style {style!r}; known: {', '.join(STYLES)}")
    images = np.empty((n, 3, image_size, image_size), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % len(CLASSNAMES)
    attributes = []
    for i in tqdm(range(n), desc=f"draw {style}", disable=not progress, leave=False):
        images[i], attrs = render_image(style, int(labels[i]), np.random.default_rng((seed, i)), image_size)
        attributes.append(attrs)
    return GeneratedImages(images=images, labels=labels, attributes=attributes, style=style, seed=seed)


def generator_meta(style: str, seed: int, image_size: int = 32) -> dict[str, Any]:
    """Provenance recorded in a cache's ``meta.json``: enough to regenerate it exactly."""
    return {
        "generator": GENERATOR_VERSION,
        "style": style,
        "seed": seed,
        "image_size": image_size,
        "supersample": SUPERSAMPLE,
        "style_params": asdict(STYLES[style]),
    }


def write_style_cache(path: str | os.PathLike, style: str, n: int, seed: int, image_size: int = 32,
                      name: str | None = None, progress: bool = False) -> None:
    """Generate a style's images and write them as an evaluation cache (see ``interpsharp.data``)."""
    data = generate(style, n, seed, image_size, progress=progress)
    meta = {"name": name or style, **generator_meta(style, seed, image_size)}
    sources = [(f"demo:{style}:seed={seed}:{i}", "") for i in range(n)]
    write_cache(path, data.images, data.labels, CLASSNAMES, sources=sources, meta=meta)
