"""What a torch-side stage's model does on the eval split, during training (the evaluator the loop calls) and
at the end (the embeddings its ONNX export is checked against), and the ending every stage shares."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from mmcompress import distributed
from mmcompress.compress.training import CHECKPOINT, HISTORY, Student, pick_device, use_bf16
from mmcompress.models.bundle import Bundle


def embed(student: Student, ctx) -> dict[str, np.ndarray]:
    """The student's embeddings of the eval inputs, per distilled tower (batches trimmed as the checks do)."""
    from mmcompress.runtimes.base import run_batched
    from mmcompress.runtimes.torch import TorchSession

    device = next(student.parameters()).device
    return {t: run_batched(TorchSession(m, student.input_names[t], device=device), ctx.inputs.feeds[t],
                           trim=ctx.inputs.trim[t])
            for t, m in student.towers.items()}


def evaluator(ctx) -> Callable[[Student], dict]:
    """student -> {task metric: value, '<tower> cos': mean cosine to the teacher} on the eval split."""
    from mmcompress.checks import tasks
    from mmcompress.checks.fidelity import cosine_rows

    r = ctx.recipe

    def run(student: Student) -> dict:
        got = embed(student, ctx)
        acc, _ = tasks.metrics(ctx.teacher.task, {**ctx.teacher_emb, **got}, ctx.inputs, r.data.prompts.ensemble,
                               r.checks.recall_k, r.checks.knn_k)
        out = {acc["primary"]["metric"]: round(acc["primary"]["value"], 2)} if acc["primary"] else {}
        for t, e in got.items():
            c = cosine_rows(e, ctx.teacher_emb[t])
            out[f"{t} cos"] = round(float(c.mean()), 4)
            out[f"{t} cos min"] = round(float(c.min()), 4)
        return out
    return run


def finish(student: Student, parent: Bundle, cfg, ctx, folder: Path, files: dict, history: list) -> tuple[dict, dict]:
    """The end of every torch-side stage, after it saved its model into `folder` (`files`: what it wrote): the
    model's eval embeddings (with the parent's for towers it did not change) and the training history saved,
    the checkpoint removed. -> (files, the manifest entries every stage has)."""
    from mmcompress.artifact import save_npz, write_json

    emb = {**{t: e for t, e in ctx.teacher_emb.items() if t in parent.towers}, **embed(student, ctx)}
    save_npz(folder / "embeddings.npz", **emb)
    write_json(folder / HISTORY, history)
    (folder / CHECKPOINT).unlink(missing_ok=True)
    files = {**files, "embeddings.npz": {"arrays": {k: list(v.shape) for k, v in emb.items()}}, HISTORY: {}}
    device = pick_device(cfg.device)
    return files, {"history": history, "device": device.type, "processes": distributed.world(),
                   "precision": "bf16" if use_bf16(cfg.precision, device) else "fp32"}
