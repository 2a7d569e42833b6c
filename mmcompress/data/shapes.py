"""Procedural shapes: coloured geometric shapes on a dark background, with captions like "a small red circle".

The set is chosen so that a small ViT trained from scratch for a few minutes tells the classes apart
(shapes that differ in outline, rotation limited to +-15 degrees); see docs/teacher.md for the curve.
Zero-shot classes are colour x shape (6 x 5 = 30); size is in the captions but not in the class.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from mmcompress.data.base import Split

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 230),
    "yellow": (230, 220, 50),
    "purple": (150, 60, 200),
    "orange": (240, 140, 30),
}
SHAPES = ["circle", "square", "triangle", "bar", "ring"]
SIZES = {"small": (7.0, 10.0), "large": (15.0, 21.0)}  # radius range in px at 64 px
TEMPLATES = ["a small {colour} {shape}", "a large {colour} {shape}"]
MAX_ROTATION_DEG = 15.0

CLASSES = [(c, s) for c in COLOURS for s in SHAPES]  # class id = colour_index * 5 + shape_index


def class_names() -> list[str]:
    return [f"{c} {s}" for c, s in CLASSES]


def class_prompts(templates: list[str] | None = None) -> list[list[str]]:
    templates = templates or TEMPLATES
    return [[t.format(colour=c, shape=s) for t in templates] for c, s in CLASSES]


def captions() -> list[str]:
    """Every distinct caption (60): the text side of contrastive training."""
    return [f"a {size} {c} {s}" for c, s in CLASSES for size in SIZES]


def _polygon(cx: float, cy: float, r: float, n: int, rot: float, start: float) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(start + rot + 2 * math.pi * k / n), cy + r * math.sin(start + rot + 2 * math.pi * k / n)) for k in range(n)]


def _rect(cx: float, cy: float, hw: float, hh: float, rot: float) -> list[tuple[float, float]]:
    c, s = math.cos(rot), math.sin(rot)
    pts = [(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)]
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]


def draw(shape: str, colour: tuple[int, int, int], r: float, cx: float, cy: float, rot: float,
         background: tuple[int, int, int], size: int = 64) -> np.ndarray:
    img = Image.new("RGB", (size, size), background)
    d = ImageDraw.Draw(img)
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "ring":
        w = max(2, int(round(r * 0.35)))
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=w)
    elif shape == "square":
        d.polygon(_rect(cx, cy, r * 0.85, r * 0.85, rot), fill=colour)
    elif shape == "triangle":
        d.polygon(_polygon(cx, cy, r * 1.1, 3, rot, -math.pi / 2), fill=colour)
    elif shape == "bar":
        d.polygon(_rect(cx, cy, r * 1.1, r * 0.3, rot), fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.asarray(img, dtype=np.uint8)


# Independent random streams: the zoo teacher's training images and the recipe's splits are drawn from
# numpy SeedSequences whose entropy starts with a different stream number, so no seed of one can reproduce the
# other (with `seed * 100 + k` a recipe with seed 10 used to evaluate on the teacher's training images).
STREAM_OTHER, STREAM_TEACHER, STREAM_SPLITS = 0, 1, 2


def generate(n: int, seed: int, size: int = 64, stream: int = STREAM_OTHER, part: int = 0) -> Split:
    """n seeded images; the same (n, seed, stream, part) gives the same pixels on every machine."""
    rng = np.random.default_rng([stream, seed, part])
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    texts: list[str] = []
    labels = np.empty(n, dtype=np.int64)
    colour_names = list(COLOURS)
    size_names = list(SIZES)
    scale = size / 64.0
    for i in range(n):
        ci, si, zi = rng.integers(len(colour_names)), rng.integers(len(SHAPES)), rng.integers(len(size_names))
        lo, hi = SIZES[size_names[zi]]
        r = rng.uniform(lo, hi) * scale
        margin = r * 1.15 + 1
        cx, cy = rng.uniform(margin, size - margin, size=2)
        rot = math.radians(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
        jitter = rng.integers(-20, 21, size=3)
        colour = tuple(int(v) for v in np.clip(np.array(COLOURS[colour_names[ci]]) + jitter, 0, 255))
        bg = int(rng.integers(0, 50))
        images[i] = draw(SHAPES[si], colour, r, cx, cy, rot, (bg, bg, bg), size)
        texts.append(f"a {size_names[zi]} {colour_names[ci]} {SHAPES[si]}")
        labels[i] = ci * len(SHAPES) + si
    return Split(images, texts, labels)
