"""A teacher or student as the pipeline sees it: named towers plus the preprocessing that feeds them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass
class ImagePreprocess:
    """uint8 (N, H, W, 3) RGB -> float32 (N, 3, size, size), normalised as the teacher's processor does."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if images.shape[1] != self.size or images.shape[2] != self.size:
            from PIL import Image

            images = np.stack([np.asarray(Image.fromarray(im).resize((self.size, self.size), Image.BICUBIC)) for im in images])
        x = images.astype(np.float32) / 255.0
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (N, H, W, C) -> (N, C, H, W)

    def to_dict(self) -> dict:
        return {"size": self.size, "mean": list(self.mean), "std": list(self.std)}


@dataclass
class TextPreprocess:
    """texts -> {'input_ids': (N, L) int64, 'attention_mask': (N, L) int64}, padded to max_length."""

    tokenizer: Any  # a transformers tokenizer
    max_length: int

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        enc = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.max_length, return_tensors="np")
        return {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}

    def to_dict(self) -> dict:
        return {"max_length": self.max_length, "tokenizer": type(self.tokenizer).__name__}


@dataclass
class TowerSpec:
    """How to call one tower: its ONNX/torch input names and the dynamic axes of each input."""

    inputs: dict[str, dict[int, str]]  # input name -> {axis: axis name}
    output: str = "embeddings"


@dataclass
class Bundle:
    """Towers by name ('image', 'text'): torch modules mapping their inputs to (N, D) embeddings.

    task 'dual-encoder' means the image and text embeddings live in one space (zero-shot, retrieval).
    """

    towers: dict[str, Any]  # name -> torch.nn.Module
    specs: dict[str, TowerSpec]
    image_preprocess: ImagePreprocess | None
    text_preprocess: TextPreprocess | None
    task: str = "dual-encoder"
    source: dict = field(default_factory=dict)  # where it came from: zoo name + cache key, hf dir, ...

    def preprocess(self, tower: str) -> Callable:
        return self.image_preprocess if tower == "image" else self.text_preprocess
