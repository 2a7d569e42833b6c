"""What every data source returns: image/caption/label splits plus the zero-shot classes and their prompts."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Split:
    """One split. images: (N, H, W, 3) uint8 RGB; texts: N captions; labels: (N,) int64 class ids."""

    images: np.ndarray
    texts: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, n: int) -> "Split":
        return Split(self.images[:n], self.texts[:n], self.labels[:n])


@dataclass
class Dataset:
    """Splits by name ('train', 'calibration', 'eval') and the zero-shot classes.

    class_prompts[c] holds one prompt per template for class c; the zero-shot check scores a class by
    reducing its prompts' similarities ('max' or 'mean'), so templates should use the wording the
    teacher was trained on.
    """

    name: str
    splits: dict[str, Split]
    class_names: list[str]
    class_prompts: list[list[str]]
    info: dict = field(default_factory=dict)

    def split(self, name: str) -> Split:
        return self.splits[name]
