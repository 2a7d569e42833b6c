"""Fidelity to the teacher: per-sample embedding cosine on identical inputs, per tower; top-1 agreement."""
from __future__ import annotations

import numpy as np


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row cosine between (N, D) arrays, computed in float64."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def cosine_to_teacher(candidate: np.ndarray, teacher: np.ndarray) -> dict:
    cos = cosine_rows(candidate, teacher)
    return {"mean": float(cos.mean()), "min": float(cos.min()), "p01": float(np.percentile(cos, 1)), "n": int(len(cos))}


def kl_to_teacher(candidate_logits: np.ndarray, teacher_logits: np.ndarray) -> dict:
    """KL(teacher || candidate) of the softmax over a task head's logits, per row (nats), in float64."""
    def log_softmax(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        x = x - x.max(1, keepdims=True)
        return x - np.log(np.exp(x).sum(1, keepdims=True))
    lt, lc = log_softmax(teacher_logits), log_softmax(candidate_logits)
    kl = (np.exp(lt) * (lt - lc)).sum(1)
    return {"mean": float(kl.mean()), "max": float(kl.max()), "p99": float(np.percentile(kl, 99)), "n": int(len(kl))}


def top1_agreement(candidate_pred: np.ndarray, teacher_pred: np.ndarray) -> float:
    """% of rows where the candidate's predicted class equals the teacher's: (N,) class ids, or (N, C) scores."""
    c = candidate_pred.argmax(1) if candidate_pred.ndim == 2 else candidate_pred
    t = teacher_pred.argmax(1) if teacher_pred.ndim == 2 else teacher_pred
    return float((c == t).mean() * 100)
