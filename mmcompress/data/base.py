"""What every data source returns: splits of images / audio / texts / pairs / labels, plus the classes and their prompts."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Split:
    """One split.

    images: (N, H, W, 3) uint8 RGB array, or a list of N such arrays of differing sizes, or None (text data)
    texts:  N captions (image data) or N texts (text data)
    labels: (N,) int64 class ids, or None when the data has no labels
    pairs:  N paired texts (text data with pairs), or None
    """

    images: np.ndarray | list | None
    texts: list[str]
    labels: np.ndarray | None
    pairs: list[str] | None = None
    origin: list[str] | None = None  # 'file:line' per row (file sources), for errors found after loading
    audio: list | None = None  # N (waveform (S,) float32 mono, sample rate) pairs (audio data), or their paths

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, idx) -> "Split":
        pick = lambda seq: None if seq is None else (seq[idx] if isinstance(seq, np.ndarray) else [seq[i] for i in idx])
        return Split(pick(self.images), [self.texts[i] for i in idx], pick(self.labels), pick(self.pairs),
                     pick(self.origin), pick(self.audio))


@dataclass
class Dataset:
    """Splits by name ('train', 'calibration', 'eval') and the classes.

    kind: 'image-text' (images with captions), 'audio-text' (clips with captions), 'text' (texts, maybe pairs), 'image-question' (images with a
    question each; labels index class_names, the answers).
    class_prompts[c] holds one prompt per template for class c (empty when the data has no labels); the
    zero-shot check scores a class by reducing its prompts' similarities ('max' or 'mean'), so templates
    should use the wording the teacher was trained on.
    """

    name: str
    kind: str
    splits: dict[str, Split]
    class_names: list[str]
    class_prompts: list[list[str]]
    info: dict = field(default_factory=dict)

    def split(self, name: str) -> Split:
        return self.splits[name]

    @property
    def has_labels(self) -> bool:
        return self.splits["eval"].labels is not None and bool(self.class_names)
