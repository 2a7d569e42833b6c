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

from mmcompress.checks import accuracy


def _rows(emb: np.ndarray, inputs, block: str) -> np.ndarray:
    start, stop = inputs.blocks[block]
    return emb[start:stop]


def _prompts(text_emb: np.ndarray, inputs) -> np.ndarray:
    return _rows(text_emb, inputs, "prompts").reshape(inputs.n_classes, inputs.n_templates, -1)  # (C, T, D)


def metrics(task: str, emb: dict[str, np.ndarray], inputs, ensemble: str, ks: list[int], knn_k: int) -> tuple[dict, np.ndarray | None]:
    """-> (accuracy dict with 'primary': {'metric', 'value'}, per-row predictions for agreement or None)."""
    out: dict = {}
    pred = None
    primary = None
    has_prompts = "prompts" in inputs.blocks and inputs.labels is not None
    if task == "dual-encoder":
        q = query(emb)
        if has_prompts:
            scores = accuracy.zero_shot_scores(emb[q], _prompts(emb["text"], inputs), ensemble)
            out["zero_shot"] = accuracy.zero_shot(scores, inputs.labels)
            pred, primary = scores.argmax(1), ("zero_shot_top1", out["zero_shot"]["top1"])
        out["recall"] = accuracy.recall(emb[q], _rows(emb["text"], inputs, "captions"), inputs.caption_of_image, ks, q)
        primary = primary or (f"{q}_to_text@1", out["recall"][f"{q}_to_text@{ks[0]}"])
    elif task == "vqa":
        pred = emb["fusion"].argmax(1)
        if inputs.labels is not None:
            out["answer"] = {"accuracy": round(float((pred == inputs.labels).mean() * 100), 2), "n": int(len(pred))}
            primary = ("answer_accuracy", out["answer"]["accuracy"])
    elif task == "classification":
        pred = emb["fusion"].argmax(1)
        if inputs.labels is not None:
            out["classification"] = {"top1": round(float((pred == inputs.labels).mean() * 100), 2), "n": int(len(pred))}
            primary = ("top1", out["classification"]["top1"])
    elif task == "itm":
        logits = emb["fusion"]
        score = match_score(logits)
        pred = logits.argmax(1) if logits.shape[1] == 2 else None  # a 2-way ITM head decides; one score ranks
        if inputs.labels is not None:
            out["match"] = {"auc": round(accuracy.auc(score, inputs.labels) * 100, 2), "n": int(len(score)),
                            "positives": int(inputs.labels.sum())}
            if pred is not None:
                out["match"]["accuracy"] = round(float((pred == inputs.labels).mean() * 100), 2)
            primary = ("match_auc", out["match"]["auc"])
    elif task in ("image-encoder", "audio-encoder") and inputs.labels is not None:
        out["knn"], pred = accuracy.knn(emb[task.split("-")[0]], inputs.labels, knn_k)
        primary = ("knn_top1", out["knn"]["top1"])
    elif task == "text-encoder":
        texts = _rows(emb["text"], inputs, "texts")
        if "pairs" in inputs.blocks:
            out["recall"] = accuracy.pair_recall(texts, _rows(emb["text"], inputs, "pairs"), ks)
            primary = ("text_to_pair@1", out["recall"][f"text_to_pair@{ks[0]}"])
        if has_prompts:
            scores = accuracy.zero_shot_scores(texts, _prompts(emb["text"], inputs), ensemble)
            out["class_prompts"] = accuracy.zero_shot(scores, inputs.labels)
            pred, primary = scores.argmax(1), ("class_prompt_top1", out["class_prompts"]["top1"])
    out["primary"] = {"metric": primary[0], "value": primary[1]} if primary else None
    return out, pred


def match_score(logits: np.ndarray) -> np.ndarray:
    """An image-text matching head's score per row: the one logit (ViLT retrieval), or match minus no-match
    logits of a 2-way head (BLIP ITM: [no match, match])."""
    return logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]


def query(emb: dict) -> str:
    """The tower a dual encoder's texts are matched against: 'image' or 'audio'."""
    return "image" if "image" in emb else "audio"


def mixed(teacher_emb: dict, emb: dict, inputs, ensemble: str, ks: list[int]) -> dict:
    """Dual encoders: one converted tower with the teacher's other tower (zero-shot, or recall without labels)."""
    q = query(emb)

    def one(img: np.ndarray, txt: np.ndarray) -> dict:
        if "prompts" in inputs.blocks and inputs.labels is not None:
            return accuracy.zero_shot(accuracy.zero_shot_scores(img, _prompts(txt, inputs), ensemble), inputs.labels)
        return accuracy.recall(img, _rows(txt, inputs, "captions"), inputs.caption_of_image, ks, q)
    return {f"{q}_only": one(emb[q], teacher_emb["text"]), "text_only": one(teacher_emb[q], emb["text"])}
