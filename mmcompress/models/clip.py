"""CLIP-style dual encoders from transformers, split into an image tower and a text tower.

transformers 4.x returns a tensor from get_image_features / get_text_features; 5.x returns a
BaseModelOutputWithPooling whose pooler_output is the projected embedding. Both are handled here.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

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


class PooledTokenImageTower(nn.Module):
    """ImageTower's export form for CLIP vision towers: the same embedding, but the last encoder layer computes
    only the class token, the one row the pooled output reads (keys and values still come from every token).

    Exact (|diff| < 1e-6 on the demo teacher and its student; the export stage's parity check holds it to
    export.onnx.parity_max_abs). It saves the last layer's query/output projections and MLP on every other
    token: int8 image tower at batch 16 on an AVX2 EPYC, 2 threads (recipes/clip-shapes-distill.yaml with
    export.onnx.pooled_tokens_only false, then true): demo teacher (4 layers) 31.4 -> 28.7 ms, its 2-layer
    student 15.3 -> 11.6 ms (docs/distillation.md).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @staticmethod
    def fits(model: nn.Module) -> bool:
        vm = getattr(model, "vision_model", None)
        layers = getattr(getattr(vm, "encoder", None), "layers", None)
        if vm is None or not layers or not hasattr(model, "visual_projection"):
            return False
        parts = ("layer_norm1", "layer_norm2", "mlp", "self_attn")
        return (hasattr(vm, "pre_layrnorm") and hasattr(vm, "post_layernorm") and hasattr(vm, "embeddings")
                and all(hasattr(layer, p) for layer in layers for p in parts)
                and all(hasattr(layers[-1].self_attn, p) for p in ("q_proj", "k_proj", "v_proj", "out_proj", "scale",
                                                                    "head_dim")))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        vm = self.model.vision_model
        h = vm.pre_layrnorm(vm.embeddings(pixel_values))  # (B, T, D)
        for layer in vm.encoder.layers[:-1]:
            h = layer(h, None)
        last = vm.encoder.layers[-1]
        attn = last.self_attn
        x = last.layer_norm1(h)
        b, t, d = x.shape
        heads = lambda y, n: y.view(b, n, -1, attn.head_dim).transpose(1, 2)  # (B, n, D) -> (B, H, n, hd)
        q = heads(attn.q_proj(x[:, :1]), 1)  # (B, H, 1, hd): the class token asks
        k, v = heads(attn.k_proj(x), t), heads(attn.v_proj(x), t)  # (B, H, T, hd): every token answers
        o = F.scaled_dot_product_attention(q, k, v, scale=attn.scale).transpose(1, 2).reshape(b, 1, -1)  # heads x hd: pruned heads make it < d
        cls = h[:, :1] + attn.out_proj(o)
        cls = cls + last.mlp(last.layer_norm2(cls))
        return self.model.visual_projection(vm.post_layernorm(cls[:, 0]))


def export_form(tower: nn.Module, pooled_only: bool) -> nn.Module:
    """The module the ONNX export traces for `tower`: PooledTokenImageTower where it applies, else the tower."""
    if pooled_only and isinstance(tower, ImageTower) and PooledTokenImageTower.fits(tower.model):
        return PooledTokenImageTower(tower.model).eval()
    return tower


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
