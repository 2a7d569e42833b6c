"""BLIP image-text matching (cross-attention fusion: the text encoder's layers attend to the ViT's patch tokens,
a 2-way head on [CLS] says whether the text describes the image) as a fusion tower of task `itm`.

Why BLIP for the cross-attention ITM model: transformers loads `BlipForImageTextRetrieval` offline from a
`save_pretrained` directory with no remote code (ALBEF and BLIP-2's Q-Former ITM need other packages or far
larger checkpoints), its vision tower is a plain ViT at a fixed image size (one ONNX graph), and it is the ITM
model most users deploy (Salesforce/blip-itm-base-coco, -large-coco, -flickr).
"""
from __future__ import annotations

import torch
from torch import nn

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)  # BLIP's processor


class BlipItm(nn.Module):
    """forward(pixel_values, input_ids, attention_mask) -> (N, 2) ITM logits [no match, match]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask,
                          use_itm_head=True).itm_score


def is_itm(config) -> bool:
    return config.model_type == "blip" and "BlipForImageTextRetrieval" in (config.architectures or [])


def load(path, config, cfg, source: dict):
    """-> (towers, specs, image_pre, text_pre, task, outputs) for a BlipForImageTextRetrieval directory."""
    import json

    from transformers import AutoTokenizer, BlipForImageTextRetrieval

    from mmcompress.models.bundle import FUSION_SPEC, ImagePreprocess, TextPreprocess

    model = BlipForImageTextRetrieval.from_pretrained(path).eval()
    proc = path / "preprocessor_config.json"
    p = json.loads(proc.read_text()) if proc.is_file() else {}
    size = config.vision_config.image_size  # BLIP's processor resizes to a square of this size, no crop
    image_pre = ImagePreprocess(size, tuple(p.get("image_mean", CLIP_MEAN)), tuple(p.get("image_std", CLIP_STD)),
                                resample=int(p.get("resample", 3)))
    tokenizer = AutoTokenizer.from_pretrained(path)
    max_length = cfg.max_length or min(config.text_config.max_position_embeddings, 512)
    text_pre = TextPreprocess(tokenizer, max_length, cfg.text_padding or "longest")
    source.update(image_size=size)
    return {"fusion": BlipItm(model).eval()}, {"fusion": FUSION_SPEC}, image_pre, text_pre, "itm", ["no match", "match"]
