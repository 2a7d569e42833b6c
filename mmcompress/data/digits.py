"""scikit-learn's bundled handwritten digits (1,797 8x8 images), upscaled to RGB, captioned by their digit."""
from __future__ import annotations

import numpy as np
from PIL import Image

from mmcompress.data.base import Split

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEMPLATES = ["a handwritten digit {digit}"]


def class_prompts(templates: list[str] | None = None) -> list[list[str]]:
    return [[t.format(digit=d) for t in (templates or TEMPLATES)] for d in NAMES]


def load_all(size: int = 64) -> Split:
    from sklearn.datasets import load_digits

    d = load_digits()
    small = (d.images / 16.0 * 255).astype(np.uint8)  # (1797, 8, 8), 0..16 -> 0..255
    images = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in small])
    images = np.repeat(images[..., None], 3, axis=-1)  # (N, size, size, 3)
    labels = d.target.astype(np.int64)
    return Split(images, [f"a handwritten digit {NAMES[y]}" for y in labels], labels)
