"""Distillation losses between a student's and the teacher's embeddings (all inputs (B, D) unless said).

cosine          1 - cos(student, teacher), per row, averaged: direction only, the metric zero-shot uses
mse             mean squared error of the raw embeddings (CLIP-KD's best single loss)
contrastive_kd  KL(teacher || student) between image->text similarity distributions over a shared set of texts,
                at the teacher's temperature: the student learns the teacher's ranking of captions/prompts
caption_ce      image -> anchor captions cross-entropy (the contrastive loss when captions repeat)
contrastive     the ordinary CLIP loss of the student on paired captions (needs captions)
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def cosine(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()


def mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(student, teacher)


def contrastive_kd(student_img: torch.Tensor, teacher_img: torch.Tensor, texts: torch.Tensor,
                   scale: float) -> torch.Tensor:
    """texts: (T, D) text embeddings both sides are compared with (the teacher's, so prompts stay valid);
    scale: the teacher's logit scale (exp of its learned log-temperature)."""
    t = F.normalize(texts, dim=-1)
    s_logits = scale * F.normalize(student_img, dim=-1) @ t.T  # (B, T)
    t_logits = scale * F.normalize(teacher_img, dim=-1) @ t.T  # (B, T)
    return F.kl_div(s_logits.log_softmax(-1), t_logits.log_softmax(-1), log_target=True, reduction="batchmean")


def caption_ce(img: torch.Tensor, anchors: torch.Tensor, caption: torch.Tensor, scale: float) -> torch.Tensor:
    """Cross-entropy of each image over the anchor texts, the target being its own caption's anchor
    (caption -1: its caption is not an anchor; the row is left out). The contrastive loss on captions when
    captions repeat across rows (a batch may hold several images of one caption)."""
    keep = caption >= 0
    if not bool(keep.any()):
        return img.sum() * 0.0
    logits = scale * F.normalize(img[keep], dim=-1) @ F.normalize(anchors, dim=-1).T  # (B', T)
    return F.cross_entropy(logits, caption[keep])


def contrastive(img: torch.Tensor, txt: torch.Tensor, scale: float) -> torch.Tensor:
    """CLIP's symmetric cross-entropy for B matching (image, caption) rows."""
    logits = scale * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T  # (B, B)
    target = torch.arange(len(img), device=img.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class HiddenMatch(nn.Module):
    """MSE between a student hidden state (B, L, d_s) and the teacher's (B, L, d_t) through a learned
    projection d_s -> d_t (trained with the student, dropped after distillation)."""

    def __init__(self, d_student: int, d_teacher: int):
        super().__init__()
        self.proj = nn.Linear(d_student, d_teacher, bias=False)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.proj(student), teacher)
