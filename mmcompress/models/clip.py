"""CLIP-style dual encoders from transformers, split into an image tower and a text tower.

transformers 4.x returns a tensor from get_image_features / get_text_features; 5.x returns a
BaseModelOutputWithPooling whose pooler_output is the projected embedding. Both are handled here.
"""
from __future__ import annotations

import torch
from torch import nn

from mmcompress.models.bundle import TowerSpec


def embedding(out) -> torch.Tensor:
    """The projected embedding from get_*_features, on transformers 4.x (a tensor) and 5.x (an output object)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class ImageTower(nn.Module):
    """pixel_values (N, 3, H, W) float32 -> (N, D) projected image embedding."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return embedding(self.model.get_image_features(pixel_values=pixel_values))


class TextTower(nn.Module):
    """input_ids, attention_mask (N, L) int64 -> (N, D) projected text embedding."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return embedding(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))


IMAGE_SPEC = TowerSpec(inputs={"pixel_values": {0: "batch"}})
TEXT_SPEC = TowerSpec(inputs={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}})


def split_towers(model: nn.Module) -> tuple[dict[str, nn.Module], dict[str, TowerSpec]]:
    model.eval()
    return {"image": ImageTower(model), "text": TextTower(model)}, {"image": IMAGE_SPEC, "text": TEXT_SPEC}
