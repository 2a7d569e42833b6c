"""An example `teacher: {python: late_fusion_teacher:build}` entrypoint: your own fusion model.

Late fusion: an encoder per modality, a fusion layer that combines their features (concatenation with the
element-wise product, then an MLP), and a task head with one logit per answer. mmcompress treats it as one
`fusion` tower: forward(pixel_values, input_ids, attention_mask) -> (N, answers) logits, exported as one ONNX
graph. The task is declared (`task="vqa"`) and `outputs` names the head's answers in logit order; the data's
answers are matched to them by name. See docs/fusion.md.

The weights here are seeded, not trained: load your own with model.load_state_dict(...) in build().
"""
from __future__ import annotations

import torch
from torch import nn

from mmcompress.data.shapes_vqa import ANSWERS
from mmcompress.models.bundle import FUSION_SPEC, Bundle, ImagePreprocess, TextPreprocess
from mmcompress.models.shapes_vqa import make_tokenizer


class LateFusion(nn.Module):
    def __init__(self, vocab: int, answers: int, dim: int = 64):
        super().__init__()
        self.image = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.GELU(), nn.Conv2d(32, dim, 3, 2, 1), nn.GELU())
        self.embed = nn.Embedding(vocab, dim)
        self.text = nn.TransformerEncoderLayer(dim, 4, 2 * dim, batch_first=True)
        self.fusion = nn.Sequential(nn.Linear(3 * dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim), nn.GELU())
        self.head = nn.Linear(dim, answers)

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        img = self.image(pixel_values).mean((2, 3))  # (N, dim)
        m = attention_mask.unsqueeze(-1).float()
        h = self.text(self.embed(input_ids), src_key_padding_mask=attention_mask == 0)  # (N, L, dim)
        txt = (h * m).sum(1) / m.sum(1).clamp(min=1.0)  # masked mean over the question's tokens
        return self.head(self.fusion(torch.cat([img, txt, img * txt], dim=-1)))


def build() -> Bundle:
    torch.manual_seed(0)
    tokenizer = make_tokenizer(max_length=8)
    return Bundle(towers={"fusion": LateFusion(len(tokenizer), len(ANSWERS))}, specs={"fusion": FUSION_SPEC},
                  image_preprocess=ImagePreprocess(size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
                  text_preprocess=TextPreprocess(tokenizer, max_length=8),
                  task="vqa", outputs=list(ANSWERS))
