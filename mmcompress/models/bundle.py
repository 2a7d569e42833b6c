"""A teacher or student as the pipeline sees it: named towers plus the preprocessing that feeds them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from mmcompress.models.audio_preprocess import AudioPreprocess


# the towers a dual encoder's text tower is matched against (CLIP-style: image; CLAP-style: audio)
QUERY_TOWERS = ("image", "audio")


@dataclass
class ImagePreprocess:
    """uint8 RGB images -> float32 (N, 3, H, W), as the teacher's image processor does it.

    Resize to size x size, or (shortest_edge set) resize the short side to shortest_edge keeping the aspect
    ratio and center-crop to size x size; then scale to [0, 1] and normalise with mean/std.
    """

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    shortest_edge: int | None = None
    resample: int = 3  # PIL.Image.BICUBIC

    def _one(self, im: np.ndarray) -> np.ndarray:
        from PIL import Image

        h, w = im.shape[:2]
        if self.shortest_edge is None:
            if (h, w) == (self.size, self.size):
                return im
            return np.asarray(Image.fromarray(im).resize((self.size, self.size), self.resample))
        short, long = (h, w) if h <= w else (w, h)
        new_long = int(self.shortest_edge * long / short)  # as transformers' get_resize_output_image_size
        nh, nw = (self.shortest_edge, new_long) if h <= w else (new_long, self.shortest_edge)
        im = np.asarray(Image.fromarray(im).resize((nw, nh), self.resample)) if (nh, nw) != (h, w) else im
        top, left = (nh - self.size) // 2, (nw - self.size) // 2
        return im[top:top + self.size, left:left + self.size]

    def __call__(self, images) -> np.ndarray:
        """images: (N, H, W, 3) uint8 array or a list of (H_i, W_i, 3) arrays."""
        x = np.stack([self._one(im) for im in images]).astype(np.float32) / 255.0  # (N, size, size, 3)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (N, H, W, C) -> (N, C, H, W)

    def to_dict(self) -> dict:
        return {"size": self.size, "mean": list(self.mean), "std": list(self.std),
                "shortest_edge": self.shortest_edge, "resample": self.resample}


@dataclass
class TextPreprocess:
    """texts -> {'input_ids': (N, L) int64, 'attention_mask': (N, L) int64}, truncated to max_length.

    padding 'longest': L is the longest row of these texts; runtimes.base.run_batched then trims every batch
    to its own longest row, so the teacher and every artifact see the lengths users send (a 256-token limit
    with 8-18-token texts is 15x slower padded). 'max_length': always L = max_length, for models that were
    trained padded and read a fixed position (SigLIP pools the last token).
    """

    tokenizer: Any  # a transformers tokenizer
    max_length: int
    padding: str = "longest"  # 'longest' | 'max_length'

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        enc = self.tokenizer(list(texts), padding=self.padding, truncation=True, max_length=self.max_length,
                             return_tensors="np")
        ids = enc["input_ids"].astype(np.int64)
        mask = enc["attention_mask"].astype(np.int64) if "attention_mask" in enc else (ids != self.pad_id).astype(np.int64)
        return {"input_ids": ids, "attention_mask": mask}

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id or 0)

    @property
    def trims(self) -> bool:
        """Whether batches may be cut to their longest row (see runtimes.base.trim_padding)."""
        return self.padding == "longest"

    def to_dict(self) -> dict:
        return {"max_length": self.max_length, "padding": self.padding, "tokenizer": type(self.tokenizer).__name__}


@dataclass
class TowerSpec:
    """How to call one tower: its input names (in forward() order) with the dynamic axes of each.

    inputs: {name: {axis: axis name}}, e.g. {"pixel_values": {0: "batch"}}; the module's forward takes the
    inputs positionally in this order and returns the (N, D) embedding. dtypes and shapes are recorded in the
    manifest from the exported graph.
    """

    inputs: dict[str, dict[int, str]]
    output: str = "embeddings"


@dataclass
class Bundle:
    """Towers by name ('image', 'audio', 'text'): torch modules mapping their inputs to (N, D) embeddings.

    task: 'dual-encoder' (image or audio, and text embeddings in one space: zero-shot, retrieval),
    'image-encoder', 'audio-encoder' or 'text-encoder' (one tower); Bundle.task_for(towers) gives it. Fusion
    models have one tower, 'fusion', taking pixel values and tokens together (FUSION_SPEC) and returning the task
    head's logits; their task is declared: 'vqa' (one answer class per question), 'classification' (one class
    per image + text, e.g. sentiment) — both with `outputs` naming the head's classes in order — or 'itm'
    (image-text matching: one score, or 2-way [no match, match] logits). Audio towers take what
    `audio_preprocess` (the teacher's feature extractor) computes from the clips.
    """

    towers: dict[str, Any]  # name -> torch.nn.Module
    specs: dict[str, TowerSpec]
    image_preprocess: ImagePreprocess | None
    text_preprocess: TextPreprocess | None
    task: str = "dual-encoder"
    source: dict = field(default_factory=dict)  # where it came from: zoo name + cache key, hf dir, ...
    outputs: list[str] | None = None  # fusion teachers: the head's classes (answers), in logit order
    audio_preprocess: AudioPreprocess | None = None

    FUSION_TASKS = ("vqa", "classification", "itm")

    def preprocess(self, tower: str) -> Callable:
        return {"image": self.image_preprocess, "audio": self.audio_preprocess}.get(tower, self.text_preprocess)

    @property
    def is_fusion(self) -> bool:
        return self.task in self.FUSION_TASKS

    @staticmethod
    def task_for(towers) -> str:
        names = set(towers)
        return {frozenset({"image", "text"}): "dual-encoder", frozenset({"audio", "text"}): "dual-encoder",
                frozenset({"image"}): "image-encoder", frozenset({"audio"}): "audio-encoder",
                frozenset({"text"}): "text-encoder"}.get(frozenset(names), "unknown")

    @property
    def query_tower(self) -> str | None:
        """The tower a dual encoder's text is matched against ('image' or 'audio'), or None."""
        return next((t for t in QUERY_TOWERS if t in self.towers), None)


# the fusion tower's inputs: an image and a question in one call
FUSION_SPEC = TowerSpec(inputs={"pixel_values": {0: "batch"}, "input_ids": {0: "batch", 1: "sequence"},
                                "attention_mask": {0: "batch", 1: "sequence"}})
