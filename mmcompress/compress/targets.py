"""The teacher's outputs on the train split, computed once per run (cached) and learnt from by every torch-side
stage: targets.npz with each tower's embeddings and, for dual encoders, the anchor texts the contrastive
losses compare with."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from mmcompress.compress.training import batch_feeds, batches
from mmcompress.models.bundle import Bundle

ANCHORS = 4096  # distinct train captions kept as the texts contrastive losses compare the image tower with


def train_key(bundle: Bundle, split) -> str:
    """Hash of the train split as the towers see it (raw rows and preprocessing)."""
    h = hashlib.sha256()
    if split.images is not None:
        for im in (split.images if isinstance(split.images, list) else [split.images]):
            h.update(np.ascontiguousarray(im).tobytes())
    for wave, rate in split.audio or []:  # (waveform, sample rate) pairs: every source's splits hold them decoded
        h.update(np.ascontiguousarray(wave).tobytes())
        h.update(str(rate).encode())
    h.update(json.dumps([list(split.texts), {t: p.to_dict() for t in bundle.towers
                                              if (p := bundle.preprocess(t)) is not None}], sort_keys=True).encode())
    return h.hexdigest()[:16]


def teacher_targets(bundle: Bundle, split, seed: int, folder: Path) -> tuple[dict, dict]:
    """Teacher embeddings of every train row for every tower, plus the anchor texts (distinct captions, at most
    ANCHORS) the contrastive losses use: targets.npz with image or audio (N, D), text (N, D), anchors (T, D),
    caption_anchor (N,) (the anchor of each row's caption, -1 when it is not one)."""
    from mmcompress.artifact import save_npz
    from mmcompress.progress import bar

    n = len(split)
    out: dict[str, np.ndarray] = {}
    with torch.inference_mode(), bar("teacher outputs on the train split", n * len(bundle.towers)) as update:
        done = 0
        for t, tower in bundle.towers.items():
            parts = []
            for sl in batches(n, 64):
                feeds = batch_feeds(bundle, split, range(sl.start, sl.stop), [t])[t]
                parts.append(tower(*[torch.from_numpy(feeds[k]) for k in bundle.specs[t].inputs]).float().numpy())
                done += sl.stop - sl.start
                update(done)
            out[t] = np.concatenate(parts)
        if "text" in bundle.towers and bundle.query_tower is not None:  # image or audio: the texts it is matched to
            distinct = list(dict.fromkeys(split.texts))
            if len(distinct) > ANCHORS:
                keep = np.sort(np.random.default_rng(seed).choice(len(distinct), ANCHORS, replace=False))
                distinct = [distinct[i] for i in keep]
            index = {c: i for i, c in enumerate(distinct)}
            anchors = []
            for sl in batches(len(distinct), 64):
                enc = bundle.text_preprocess(distinct[sl])
                anchors.append(bundle.towers["text"](*[torch.from_numpy(enc[k]) for k in bundle.specs["text"].inputs]).float().numpy())
            out["anchors"] = np.concatenate(anchors)
            out["caption_anchor"] = np.array([index.get(c, -1) for c in split.texts], dtype=np.int64)
    save_npz(folder / "targets.npz", **out)
    return {"targets.npz": {"arrays": {k: list(v.shape) for k, v in out.items()}}}, {}
