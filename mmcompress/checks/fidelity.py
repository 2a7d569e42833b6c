"""Fidelity to the teacher: per-sample embedding cosine on identical inputs, per tower."""
from __future__ import annotations

import numpy as np

from mmcompress.export.onnx import cosine_rows


def cosine_to_teacher(candidate: np.ndarray, teacher: np.ndarray) -> dict:
    cos = cosine_rows(candidate, teacher)
    return {"mean": float(cos.mean()), "min": float(cos.min()), "p01": float(np.percentile(cos, 1)), "n": int(len(cos))}


def top1_agreement(candidate_scores: np.ndarray, teacher_scores: np.ndarray) -> float:
    """% of rows where the candidate's best class (N, C scores) equals the teacher's."""
    return float((candidate_scores.argmax(1) == teacher_scores.argmax(1)).mean() * 100)
