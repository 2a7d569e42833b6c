"""report.json (schema in docs/report.md; bump SCHEMA_VERSION on any incompatible change)."""
from __future__ import annotations

import datetime as dt

import numpy as np

from mmcompress.checks import accuracy, fidelity, gate

SCHEMA_VERSION = 1


def _task_metrics(image_emb: np.ndarray, text_emb: np.ndarray, inputs, ensemble: str, ks: list[int]) -> tuple[dict, np.ndarray]:
    m = inputs.n_captions
    prompts = text_emb[m:].reshape(inputs.n_classes, inputs.n_templates, -1)  # (C, T, D)
    scores = accuracy.zero_shot_scores(image_emb, prompts, ensemble)
    out = {"zero_shot": accuracy.zero_shot(scores, inputs.labels),
           "recall": accuracy.recall(image_emb, text_emb[:m], inputs.caption_of_image, ks)}
    return out, scores


def _size_mb(towers: dict) -> float:
    return sum(p.stat().st_size for p in towers.values()) / 1e6


def build(run, bundle, dataset, inputs, teacher_emb: dict, artifacts: dict, timings: dict, seconds: float) -> dict:
    from mmcompress.machine import fingerprint
    from mmcompress.artifact import sha256_file

    recipe = run.recipe
    ensemble, ks = recipe.data.prompts.ensemble, recipe.checks.recall_k
    t_acc, t_scores = _task_metrics(teacher_emb["image"], teacher_emb["text"], inputs, ensemble, ks)
    params = {id(p): p for tower in bundle.towers.values() for p in tower.parameters()}  # towers may share a model
    teacher_size = sum(p.numel() * p.element_size() for p in params.values()) / 1e6
    rows = {"teacher": {"kind": "pytorch-fp32", "towers": {t: {"path": None, "converted": False} for t in bundle.towers},
                        "size_mb": teacher_size, "accuracy": t_acc,
                        "latency": {t: {b: timings[t][b]["teacher"] for b in timings[t]} for t in timings},
                        "budgets": [], "verdict": "reference"}}
    passed = True
    for name, a in artifacts.items():
        v, emb = a["variant"], a["embeddings"]
        acc, scores = _task_metrics(emb["image"], emb["text"], inputs, ensemble, ks)
        acc["delta_top1"] = acc["zero_shot"]["top1"] - t_acc["zero_shot"]["top1"]
        # mixed pairs: one converted tower against the teacher's other tower
        acc["mixed"] = {
            "image_only": _task_metrics(emb["image"], teacher_emb["text"], inputs, ensemble, ks)[0]["zero_shot"],
            "text_only": _task_metrics(teacher_emb["image"], emb["text"], inputs, ensemble, ks)[0]["zero_shot"]}
        fid = {t: fidelity.cosine_to_teacher(emb[t], teacher_emb[t]) for t in a["towers"]}
        fid["top1_agreement"] = fidelity.top1_agreement(scores, t_scores)
        entry = {"kind": f"onnxruntime-{v.quantize if v.quantize != 'none' else 'fp32'}",
                 "variant": v.model_dump(mode="json"),
                 "towers": {t: {"path": str(p.relative_to(run.run_dir)), "converted": t in v.towers and v.quantize != "none",
                                "bytes": p.stat().st_size, "sha256": sha256_file(p)} for t, p in a["towers"].items()},
                 "size_mb": _size_mb(a["towers"]), "accuracy": acc, "fidelity": fid,
                 "latency": {t: {b: timings[t][b][str(a["towers"][t])] for b in timings[t]} for t in timings}}
        entry["budgets"] = gate.evaluate(entry, recipe.budgets_for(v))
        ok = all(r["passed"] for r in entry["budgets"])
        entry["verdict"] = "pass" if ok else "fail"
        passed &= ok
        rows[name] = entry
    fp = fingerprint()
    return {
        "schema_version": SCHEMA_VERSION,
        "name": recipe.name,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "recipe": {"path": str(run.recipe_path), "sha256": sha256_file(run.recipe_path) if run.recipe_path.is_file() else None},
        "machine": {**fp, "threads": run.threads},
        "teacher": bundle.source,
        "data": {"source": dataset.name, "splits": {k: len(s) for k, s in dataset.splits.items()},
                 "eval_key": inputs.key, "classes": len(dataset.class_names),
                 "prompts": {"templates": dataset.info.get("templates"), "ensemble": ensemble}},
        "checks": {"runtime": recipe.checks.runtime, "batch_sizes": recipe.checks.batch_sizes,
                   "rounds": recipe.checks.rounds, "warmup": recipe.checks.warmup, "ort_spinning": False},
        "stages": run.stages,
        "artifacts": rows,
        "passed": passed,
        "failures": [gate.describe(n, r) for n, e in rows.items() for r in e["budgets"] if not r["passed"]],
    }
