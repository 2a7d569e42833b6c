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


# BLIP heads that generate text with a decoder: AutoModel would load their directory as a BlipModel dual encoder
# with the text tower and projections it lacks left random, and the checks would then compare noise
GENERATIVE = {"BlipForQuestionAnswering": "answers questions by generating the answer's words with a text decoder",
              "BlipForConditionalGeneration": "writes captions with a text decoder"}


def refusal(config) -> str | None:
    """Why a BLIP directory cannot be a teacher, or None (BlipForImageTextRetrieval: task itm; BlipModel: a dual
    encoder, its image and text embeddings)."""
    arch = (config.architectures or ["BlipModel"])[0]
    if config.model_type != "blip" or arch in ("BlipForImageTextRetrieval", "BlipModel"):
        return None
    what = GENERATIVE.get(arch, "is not a BLIP model mmcompress knows")
    return (f"holds a {arch}, which {what}: there is no fixed head to export as one graph and check against the "
            f"teacher. Of BLIP models mmcompress runs BlipForImageTextRetrieval (image-text matching, task itm) "
            f"and BlipModel (image and text embeddings, a dual encoder). For question answering use a model with "
            f"an answer head (a ViltForQuestionAnswering directory), or a python entrypoint whose fusion tower "
            f"returns answer logits (task='vqa', outputs=[...]; docs/fusion.md)")


def head(path, config, cfg, where: str = "teacher.hf"):
    """-> (task, outputs, text_pre) of a BlipForImageTextRetrieval directory, without its weights (preflight)."""
    from mmcompress.models.hf import text_preprocess

    return "itm", None, text_preprocess(path, cfg, config.text_config.max_position_embeddings, where)


def load(path, config, cfg, source: dict):
    """-> (towers, specs, image_pre, text_pre, task, outputs) for a BlipForImageTextRetrieval directory."""
    import json

    from transformers import BlipForImageTextRetrieval

    from mmcompress.models.bundle import FUSION_SPEC, ImagePreprocess

    model = BlipForImageTextRetrieval.from_pretrained(path).eval()
    proc = path / "preprocessor_config.json"
    p = json.loads(proc.read_text()) if proc.is_file() else {}
    size = config.vision_config.image_size  # BLIP's processor resizes to a square of this size, no crop
    image_pre = ImagePreprocess(size, tuple(p.get("image_mean", CLIP_MEAN)), tuple(p.get("image_std", CLIP_STD)),
                                resample=int(p.get("resample", 3)))
    task, _, text_pre = head(path, config, cfg)
    source.update(image_size=size)
    return {"fusion": BlipItm(model).eval()}, {"fusion": FUSION_SPEC}, image_pre, text_pre, task, ["no match", "match"]
