"""Which accuracy checks fit which teacher, and the one primary metric each task is gated on.

dual-encoder   zero-shot top-1 over class prompts (labels) and image<->text (audio<->text) recall@k; primary:
               zero-shot top-1, or image->text (audio->text) recall@1 without labels
image-encoder  leave-one-out k-NN top-1 on the labelled eval split; primary: k-NN top-1
audio-encoder  the same on the audio tower's embeddings
text-encoder   nearest-class-prompt top-1 (labels) and text<->pair recall@k (pairs); primary: class-prompt
               top-1, else text->pair recall@1
vqa            fusion teachers: answer accuracy (argmax of the answer logits against the answer); primary:
               answer accuracy.
classification fusion teachers with class logits (e.g. sentiment of image + text): top-1; primary: top1.
itm            image-text matching fusion teachers: ROC AUC of the match score against the match labels (and
               accuracy for a 2-way head); primary: match AUC. Fidelity adds top-1 agreement and KL to the teacher's answer distribution.
Every task also gets embedding cosine to the teacher per tower (fidelity), which needs no labels; for a fusion
tower that is the cosine between answer-logit vectors.
"""
from __future__ import annotations

import numpy as np

# one implementation for the run and for the board-side check (checks/board_check.py ships in every bundle)
from mmcompress.checks.accuracy import recall, zero_shot, zero_shot_scores
from mmcompress.checks.board_check import _prompts, _rows, match_score, query  # noqa: F401
from mmcompress.checks.board_check import task_metrics as metrics  # noqa: F401


def mixed(teacher_emb: dict, emb: dict, inputs, ensemble: str, ks: list[int]) -> dict:
    """Dual encoders: one converted tower with the teacher's other tower (zero-shot, or recall without labels)."""
    q = query(emb)

    def one(img: np.ndarray, txt: np.ndarray) -> dict:
        if "prompts" in inputs.blocks and inputs.labels is not None:
            return zero_shot(zero_shot_scores(img, _prompts(txt, inputs), ensemble), inputs.labels)
        return recall(img, _rows(txt, inputs, "captions"), inputs.caption_of_image, ks, q)
    return {f"{q}_only": one(emb[q], teacher_emb["text"]), "text_only": one(teacher_emb[q], emb["text"])}
