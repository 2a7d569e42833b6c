"""Distillation losses: zero exactly when the student matches the teacher, positive and differentiable otherwise."""
from __future__ import annotations

import math

import torch

from mmcompress.compress import losses


def test_embedding_losses_vanish_at_the_teacher_and_grow_away_from_it():
    torch.manual_seed(0)
    t = torch.randn(8, 16)
    assert losses.cosine(t, t).abs() < 1e-6 and losses.mse(t, t) == 0
    assert losses.cosine(2 * t, t).abs() < 1e-6 and losses.mse(2 * t, t) > 0  # cosine ignores scale, mse does not
    assert math.isclose(losses.cosine(-t, t).item(), 2.0, rel_tol=1e-5)  # opposite direction: 1 - (-1)


def test_contrastive_kd_is_the_kl_between_similarity_distributions():
    torch.manual_seed(0)
    img, texts = torch.randn(4, 16), torch.randn(10, 16)
    assert losses.contrastive_kd(img, img, texts, 50.0).abs() < 1e-6
    student = torch.randn(4, 16, requires_grad=True)
    loss = losses.contrastive_kd(student, img, texts, 50.0)
    loss.backward()
    assert loss > 0 and student.grad is not None and student.grad.abs().sum() > 0
    # by hand for one row
    p = torch.softmax(50 * torch.nn.functional.normalize(img, dim=-1) @ torch.nn.functional.normalize(texts, dim=-1).T, -1)
    q = torch.softmax(50 * torch.nn.functional.normalize(student, dim=-1) @ torch.nn.functional.normalize(texts, dim=-1).T, -1)
    assert torch.allclose(loss, (p * (p.log() - q.log())).sum(-1).mean(), atol=1e-5)


def test_contrastive_prefers_matching_pairs():
    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(6, 32), dim=-1)
    matched = losses.contrastive(x, x, 20.0)
    shuffled = losses.contrastive(x, x.roll(1, 0), 20.0)
    assert matched < 0.1 < shuffled


def test_hidden_match_learns_its_projection():
    """When the teacher's states are a linear map of the student's, training the projection drives the loss
    towards zero."""
    torch.manual_seed(0)
    m = losses.HiddenMatch(8, 12)
    s = torch.randn(4, 5, 8)
    t = s @ torch.randn(8, 12)  # (B, L, 12)
    first = m(s, t).item()
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = m(s, t)
        loss.backward()
        opt.step()
    assert loss.item() < 0.01 * first
