"""Questions about the procedural shapes images, answered by one word: the built-in fusion demo's data.

Every image gets one question, drawn (seeded) from three kinds; the answer is a class of ANSWERS:
  what colour is the shape ?   -> one of 6 colours
  what shape is it ?           -> one of 5 shapes
  is it small ? / is it large ? -> yes / no
The size questions cannot be answered from the image or the question alone: the model has to mix them.
"""
from __future__ import annotations

import numpy as np

from mmcompress.data import shapes
from mmcompress.data.base import Split

ANSWERS = [*shapes.COLOURS, *shapes.SHAPES, "yes", "no"]
WORDS = ["what", "colour", "is", "the", "shape", "it", "a", "small", "large", "?", *shapes.COLOURS, *shapes.SHAPES]
KINDS = ("colour", "shape", "size")


def ask(caption: str, rng: np.random.Generator) -> tuple[str, str]:
    """A question about the image a shapes caption ('a small red circle') describes, and its answer."""
    _, size, colour, shape = caption.split()
    kind = KINDS[rng.integers(len(KINDS))]
    if kind == "colour":
        return "what colour is the shape ?", colour
    if kind == "shape":
        return "what shape is it ?", shape
    if kind == "size":
        asked = ("small", "large")[rng.integers(2)]
        return f"is it {asked} ?", "yes" if asked == size else "no"
    raise ValueError(f"unknown question kind {kind!r}")


def generate(n: int, seed: int, size: int = 64, stream: int = shapes.STREAM_OTHER, part: int = 0) -> Split:
    """n seeded images, one question each: texts are the questions, labels the answers' index in ANSWERS."""
    images = shapes.generate(n, seed, size, stream, part)
    rng = np.random.default_rng([stream, seed, part, 1])
    qa = [ask(c, rng) for c in images.texts]
    return Split(images.images, [q for q, _ in qa], np.array([ANSWERS.index(a) for _, a in qa], dtype=np.int64))
