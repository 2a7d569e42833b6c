"""Fidelity to the teacher: per-sample embedding cosine on identical inputs, per tower; top-1 agreement."""
from __future__ import annotations

import numpy as np

# one implementation for the run and for the board-side check (checks/board_check.py ships in every bundle)
from mmcompress.checks.board_check import cosine_rows, cosine_to_teacher, top1_agreement  # noqa: F401


def kl_to_teacher(candidate_logits: np.ndarray, teacher_logits: np.ndarray) -> dict:
    """KL(teacher || candidate) of the softmax over a task head's logits, per row (nats), in float64."""
    def log_softmax(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        x = x - x.max(1, keepdims=True)
        return x - np.log(np.exp(x).sum(1, keepdims=True))
    lt, lc = log_softmax(teacher_logits), log_softmax(candidate_logits)
    kl = (np.exp(lt) * (lt - lc)).sum(1)
    return {"mean": float(kl.mean()), "max": float(kl.max()), "p99": float(np.percentile(kl, 99)), "n": int(len(kl))}
