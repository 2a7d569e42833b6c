"""ViLT (single-stream early fusion: text tokens and image patches in one transformer) as a fusion tower.

ViltEmbeddings.visual_embed samples the patches of every row in Python loops (with torch.multinomial: a random
permutation of the patches even when all are valid), which neither exports to one ONNX graph nor gives the same
order twice. For images of one fixed size, where every patch is valid, FixedSizeVilt computes the same patch
embeddings in grid order (conv patches + the position embeddings interpolated to the grid as visual_embed does
+ the class token) and hands them to the model as `image_embeds`; the transformer is permutation-equivariant
over positions that carry their own position embedding, so the logits equal the Hugging Face forward's.
"""
from __future__ import annotations

import torch
from torch import nn


class FixedSizeVilt(nn.Module):
    """forward(pixel_values (N, 3, H, W), input_ids (N, L), attention_mask (N, L)) -> the head's logits: (N,
    answers) for question answering, (N, 1) for retrieval."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        emb = self.model.vilt.embeddings
        x = emb.patch_embeddings(pixel_values)  # (N, C, h, w)
        n, c, h, w = x.shape
        grid = emb.config.image_size // emb.config.patch_size
        pos = emb.position_embeddings[:, 1:, :].transpose(1, 2).reshape(1, c, grid, grid)
        pos = nn.functional.interpolate(pos, size=(h, w), mode="bilinear", align_corners=True)
        x = x.flatten(2).transpose(1, 2) + pos.flatten(2).transpose(1, 2)  # (N, h*w, C)
        cls = emb.cls_token.expand(n, -1, -1) + emb.position_embeddings[:, :1, :]
        x = torch.cat([cls, x], dim=1)
        mask = torch.ones(x.shape[:2], dtype=attention_mask.dtype, device=x.device)  # every patch is valid
        return self.model(input_ids=input_ids, attention_mask=attention_mask, image_embeds=x, pixel_mask=mask).logits


def head(path, config, cfg, where: str = "teacher.hf"):
    """-> (task, outputs, text_pre) of a ViltForQuestionAnswering (task vqa: answers from id2label) or
    ViltForImageAndTextRetrieval (task itm: one score) directory, from its config and tokenizer alone: what the
    data is checked against before any weights load (preflight)."""
    from mmcompress.errors import RecipeError
    from mmcompress.models.hf import text_preprocess

    arch = (config.architectures or ["?"])[0]
    if arch == "ViltForQuestionAnswering":
        task, outputs = "vqa", [str(config.id2label[i]) for i in range(config.num_labels)]
    elif arch == "ViltForImageAndTextRetrieval":  # one matching score per (image, text)
        task, outputs = "itm", None
    else:
        raise RecipeError(f"{where}: {path} holds a {arch}; of ViLT models mmcompress runs question answering "
                          f"(ViltForQuestionAnswering) and image-text matching (ViltForImageAndTextRetrieval)")
    return task, outputs, text_preprocess(path, cfg, config.max_position_embeddings, where)


def load(path, config, cfg, source: dict):
    """-> (towers, specs, image_pre, text_pre, task, outputs) for a ViltForQuestionAnswering (task vqa) or
    ViltForImageAndTextRetrieval (task itm: one score) directory."""
    import json

    from transformers import ViltForImageAndTextRetrieval, ViltForQuestionAnswering

    from mmcompress.models.bundle import FUSION_SPEC, ImagePreprocess

    task, outputs, text_pre = head(path, config, cfg)
    model = (ViltForQuestionAnswering if task == "vqa" else ViltForImageAndTextRetrieval).from_pretrained(path).eval()
    proc = path / "preprocessor_config.json"
    p = json.loads(proc.read_text()) if proc.is_file() else {}
    # one fixed square size: the model's own image_size (its position grid); ViLT's processor would keep the
    # aspect ratio and pad, which a fixed-shape graph does not
    image_pre = ImagePreprocess(config.image_size, tuple(p.get("image_mean", (0.5, 0.5, 0.5))),
                                tuple(p.get("image_std", (0.5, 0.5, 0.5))))
    source.update(image_size=config.image_size, note="images resized to one square size (the model's image_size)")
    return {"fusion": FixedSizeVilt(model).eval()}, {"fusion": FUSION_SPEC}, image_pre, text_pre, task, outputs
