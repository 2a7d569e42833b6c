"""Task accuracy of a dual encoder on held-out data: zero-shot top-1 and image<->text recall@k.

Captions may repeat (the shapes set has 60 distinct captions), so retrieval ranks the *distinct* captions and a
retrieved item counts as correct when its caption equals the query's caption.
"""
from __future__ import annotations

import numpy as np


def normalize(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)


def zero_shot_scores(image_emb: np.ndarray, prompt_emb: np.ndarray, ensemble: str = "max") -> np.ndarray:
    """image_emb (N, D); prompt_emb (C, T, D): T templates per class -> class scores (N, C)."""
    img = normalize(image_emb)
    prompts = normalize(prompt_emb)
    if ensemble == "max":
        return np.einsum("nd,ctd->nct", img, prompts).max(-1)
    return img @ normalize(prompts.mean(1)).T


def zero_shot(scores: np.ndarray, labels: np.ndarray) -> dict:
    """scores (N, C), labels (N,) -> top-1 and top-5 in %."""
    order = np.argsort(-scores, axis=1)
    top1 = float((order[:, 0] == labels).mean() * 100)
    top5 = float((order[:, :5] == labels[:, None]).any(1).mean() * 100)
    return {"top1": top1, "top5": top5, "n": int(len(labels))}


def recall(image_emb: np.ndarray, caption_emb: np.ndarray, caption_of_image: np.ndarray, ks: list[int],
           query: str = "image") -> dict:
    """image_emb (N, D); caption_emb (M, D) for the M distinct captions; caption_of_image (N,) in [0, M).
    query: what the rows of image_emb are ('image', or 'audio' for audio-text models): it names the keys.

    image->text: for each image, is its caption among the k most similar distinct captions?
    text->image: for each image's caption as query, does any of the k most similar images carry that caption?
    """
    sim = normalize(image_emb) @ normalize(caption_emb).T  # (N, M)
    out = {}
    i2t_rank = np.argsort(-sim, axis=1)  # (N, M)
    t2i_rank = np.argsort(-sim.T, axis=1)  # (M, N)
    for k in ks:
        out[f"{query}_to_text@{k}"] = float((i2t_rank[:, :k] == caption_of_image[:, None]).any(1).mean() * 100)
        hit_per_caption = (caption_of_image[t2i_rank[:, :k]] == np.arange(len(caption_emb))[:, None]).any(1)  # (M,)
        out[f"text_to_{query}@{k}"] = float(hit_per_caption[caption_of_image].mean() * 100)
    return out


def knn(emb: np.ndarray, labels: np.ndarray, k: int) -> tuple[dict, np.ndarray]:
    """Leave-one-out k-NN on (N, D) embeddings by cosine; majority vote (ties: the smaller class id).
    Returns ({'top1', 'k', 'n'}, predictions (N,))."""
    x = normalize(emb)
    sim = x @ x.T  # (N, N)
    np.fill_diagonal(sim, -np.inf)
    k = min(k, len(x) - 1)
    nn_idx = np.argsort(-sim, axis=1)[:, :k]  # (N, k)
    n_classes = int(labels.max()) + 1
    votes = np.stack([np.bincount(labels[row], minlength=n_classes) for row in nn_idx])  # (N, C)
    pred = votes.argmax(1)
    return {"top1": float((pred == labels).mean() * 100), "k": int(k), "n": int(len(x))}, pred


def pair_recall(queries: np.ndarray, targets: np.ndarray, ks: list[int]) -> dict:
    """Row i of queries belongs with row i of targets: text->pair and pair->text recall@k in %."""
    sim = normalize(queries) @ normalize(targets).T  # (N, N)
    truth = np.arange(len(sim))[:, None]
    out = {}
    for k in ks:
        out[f"text_to_pair@{k}"] = float((np.argsort(-sim, axis=1)[:, :k] == truth).any(1).mean() * 100)
        out[f"pair_to_text@{k}"] = float((np.argsort(-sim.T, axis=1)[:, :k] == truth).any(1).mean() * 100)
    return out


def auc(score: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of `score` for the positives in `labels` (0/1): the chance a random positive outscores a random
    negative, ties counting half (scikit-learn's roc_auc_score). 0.5 when one class is absent."""
    from sklearn.metrics import roc_auc_score

    if labels.min() == labels.max():
        return 0.5
    return float(roc_auc_score(labels, score.astype(np.float64)))
