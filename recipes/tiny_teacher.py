"""An example `teacher: {python: tiny_teacher:build}` entrypoint: a dual encoder written as plain torch modules.

build() returns a mmcompress Bundle: the towers (torch modules mapping their inputs to (N, D) embeddings),
their input specs (names in forward() order, dynamic axes), and the preprocessing for each tower.
See docs/teachers.md for the contract.
"""
from __future__ import annotations

import torch
from torch import nn

from mmcompress.models.bundle import Bundle, ImagePreprocess, TextPreprocess, TowerSpec
from mmcompress.models.shapes_clip import make_tokenizer


class ImageEncoder(nn.Module):
    """(N, 3, 32, 32) -> (N, 64): two strided convs, global average pool, a projection."""

    def __init__(self, dim: int = 64):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.GELU(), nn.Conv2d(32, 64, 3, 2, 1), nn.GELU())
        self.proj = nn.Linear(64, dim)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.proj(self.conv(pixel_values).mean((2, 3)))


class TextEncoder(nn.Module):
    """(N, L) token ids + mask -> (N, 64): embeddings, one transformer layer, masked mean, a projection."""

    def __init__(self, vocab: int, dim: int = 64):
        super().__init__()
        self.emb = nn.Embedding(vocab, 64)
        self.layer = nn.TransformerEncoderLayer(64, 4, 128, batch_first=True)
        self.proj = nn.Linear(64, dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.layer(self.emb(input_ids))  # (N, L, 64)
        m = attention_mask.unsqueeze(-1).float()
        return self.proj((h * m).sum(1) / m.sum(1).clamp(min=1.0))


def build() -> Bundle:
    torch.manual_seed(0)
    tokenizer = make_tokenizer(max_length=8)
    return Bundle(
        towers={"image": ImageEncoder(), "text": TextEncoder(len(tokenizer))},
        specs={"image": TowerSpec(inputs={"pixel_values": {0: "batch"}}),
               "text": TowerSpec(inputs={"input_ids": {0: "batch", 1: "sequence"},
                                         "attention_mask": {0: "batch", 1: "sequence"}})},
        image_preprocess=ImagePreprocess(size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        text_preprocess=TextPreprocess(tokenizer, max_length=8),
    )
