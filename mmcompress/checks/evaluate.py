"""Runs the teacher and each artifact over the eval inputs once (cached per stage) and times them interleaved.

Text inputs are the distinct eval captions followed by every class prompt, so one text pass serves retrieval,
zero-shot and text-tower fidelity.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmcompress.data.base import Dataset
from mmcompress.models.bundle import Bundle


@dataclass
class EvalInputs:
    image: dict[str, np.ndarray]        # {'pixel_values': (N, 3, H, W)} preprocessed eval images
    text: dict[str, np.ndarray]         # {'input_ids', 'attention_mask': (M + C*T, L)}
    texts: list[str]                    # M distinct captions, then C*T prompts (class-major)
    n_captions: int                     # M
    caption_of_image: np.ndarray        # (N,) index into the M captions
    labels: np.ndarray                  # (N,) class ids
    n_classes: int                      # C
    n_templates: int                    # T
    calib_image: dict[str, np.ndarray]  # preprocessed calibration images
    calib_text: dict[str, np.ndarray]   # tokenized calibration captions
    key: str                            # hash of the raw data and preprocessing: part of cache keys


def prepare_inputs(bundle: Bundle, data: Dataset) -> EvalInputs:
    ev, cal = data.split("eval"), data.split("calibration")
    captions = list(dict.fromkeys(ev.texts))
    index = {c: i for i, c in enumerate(captions)}
    n_templates = len(data.class_prompts[0])
    texts = captions + [p for prompts in data.class_prompts for p in prompts]
    h = hashlib.sha256()
    for arr in (ev.images, ev.labels, cal.images):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(repr((texts, cal.texts, bundle.image_preprocess.to_dict(), bundle.text_preprocess.to_dict())).encode())
    return EvalInputs(
        image={"pixel_values": bundle.image_preprocess(ev.images)},
        text=bundle.text_preprocess(texts), texts=texts, n_captions=len(captions),
        caption_of_image=np.array([index[t] for t in ev.texts], dtype=np.int64), labels=ev.labels,
        n_classes=len(data.class_prompts), n_templates=n_templates,
        calib_image={"pixel_values": bundle.image_preprocess(cal.images)} if len(cal) else {},
        calib_text=bundle.text_preprocess(cal.texts) if len(cal) else {},
        key=h.hexdigest()[:16])


def tower_inputs(inputs: EvalInputs, tower: str) -> dict[str, np.ndarray]:
    return inputs.image if tower == "image" else inputs.text


def _embed_all(sessions: dict, inputs: EvalInputs, label: str) -> dict[str, np.ndarray]:
    from mmcompress.progress import bar
    from mmcompress.runtimes.base import run_batched

    out = {}
    total = sum(len(next(iter(tower_inputs(inputs, t).values()))) for t in sessions)
    with bar(f"evaluating {label}", total) as update:
        done = 0
        for tower, sess in sessions.items():
            feeds = tower_inputs(inputs, tower)
            out[tower] = run_batched(sess, feeds, progress=lambda n, base=done: update(base + n))
            done += len(next(iter(feeds.values())))
    return out


def embed_teacher(bundle: Bundle, inputs: EvalInputs, folder: Path) -> tuple[dict, dict]:
    from mmcompress.pipeline import save_npz
    from mmcompress.runtimes.torch import TorchSession

    sessions = {t: TorchSession(m, list(bundle.specs[t].inputs), f"teacher-{t}") for t, m in bundle.towers.items()}
    emb = _embed_all(sessions, inputs, "teacher (PyTorch fp32)")
    save_npz(folder / "embeddings.npz", **emb)
    return {"embeddings.npz": {"arrays": {k: list(v.shape) for k, v in emb.items()}}}, {}


def embed_artifact(towers: dict[str, Path], inputs: EvalInputs, threads: int, folder: Path) -> tuple[dict, dict]:
    from mmcompress.pipeline import save_npz
    from mmcompress.runtimes.onnxruntime import OrtSession

    sessions = {t: OrtSession(p, threads) for t, p in towers.items()}
    emb = _embed_all(sessions, inputs, folder.name)
    save_npz(folder / "embeddings.npz", **emb)
    return {"embeddings.npz": {"arrays": {k: list(v.shape) for k, v in emb.items()}}}, {}


def _batch(feeds: dict[str, np.ndarray], b: int) -> dict[str, np.ndarray]:
    n = len(next(iter(feeds.values())))
    reps = -(-b // n)  # ceil: tile when the eval set is smaller than the batch
    return {k: np.ascontiguousarray(np.concatenate([v] * reps)[:b]) for k, v in feeds.items()}


def measure_latency(bundle: Bundle, artifacts: dict, inputs: EvalInputs, cfg, threads: int) -> dict:
    """-> {tower: {batch: {session name: summary}}}; session names: 'teacher' and each distinct ONNX file."""
    from mmcompress.checks.latency import measure, summarize
    from mmcompress.progress import bar
    from mmcompress.runtimes.onnxruntime import OrtSession
    from mmcompress.runtimes.torch import TorchSession

    out: dict = {}
    plan = [(t, b) for t in bundle.towers for b in cfg.batch_sizes]
    with bar("timing (interleaved with the teacher)", len(plan) * cfg.rounds) as update:
        done = 0
        for tower in bundle.towers:
            files = sorted({str(a["towers"][tower]) for a in artifacts.values()})
            sessions = {"teacher": TorchSession(bundle.towers[tower], list(bundle.specs[tower].inputs))}
            sessions.update({f: OrtSession(Path(f), threads) for f in files})
            out[tower] = {}
            for b in cfg.batch_sizes:
                feeds = _batch(tower_inputs(inputs, tower), b)

                def tick():
                    nonlocal done
                    done += 1
                    update(done)
                times = measure(sessions, feeds, rounds=cfg.rounds, warmup=cfg.warmup, progress=tick)
                out[tower][str(b)] = summarize(times, "teacher")
    return out
