"""report.json (schema in docs/report.md; bump SCHEMA_VERSION on any incompatible change)."""
from __future__ import annotations

import datetime as dt

import numpy as np

from mmcompress.checks import fidelity, gate, tasks

SCHEMA_VERSION = 2  # 2: text latency per (batch, length) keyed 'B@L'; budget rows with seq_len and passed None


def _size_mb(towers: dict) -> float:
    return sum(p.stat().st_size for p in set(towers.values())) / 1e6  # towers may share one file (torch weights)


def build(run, bundle, dataset, inputs, teacher_emb: dict, artifacts: dict, evaluations: dict, timings: dict,
          seconds: float) -> dict:
    """artifacts: name -> artifact.Artifact; evaluations: name -> checks.evaluate.Evaluation (the same names)."""
    from mmcompress import runtimes
    from mmcompress.artifact import sha256_file
    from mmcompress.machine import fingerprint, int8_kind
    from mmcompress.runtimes.torch import CPU_SETTLE_S, cuda_info

    recipe = run.recipe
    task, ensemble, ks = bundle.task, recipe.data.prompts.ensemble, recipe.checks.recall_k

    def evaluate(emb: dict) -> tuple[dict, np.ndarray | None]:
        return tasks.metrics(task, emb, inputs, ensemble, ks, recipe.checks.knn_k)

    t_acc, t_pred = evaluate(teacher_emb)
    params = {id(p): p for tower in bundle.towers.values() for p in tower.parameters()}  # towers may share a model
    teacher_size = sum(p.numel() * p.element_size() for p in params.values()) / 1e6
    rows = {"teacher": {"kind": "pytorch-fp32", "runtime": {"runtime": "torch-cpu", "device": "cpu"}, "towers": {t: {"path": None, "converted": False} for t in bundle.towers},
                        "size_mb": teacher_size, "accuracy": t_acc,
                        "latency": {t: {b: timings[t][b]["teacher"] for b in timings[t]} for t in timings},
                        "budgets": [], "verdict": "reference"}}
    passed = True
    for name, a in artifacts.items():
        v, emb = a.variant, evaluations[name].embeddings
        acc, pred = evaluate(emb)
        acc["delta"] = acc["primary"]["value"] - t_acc["primary"]["value"] if acc["primary"] else None
        if task == "dual-encoder":
            acc["mixed"] = tasks.mixed(teacher_emb, emb, inputs, ensemble, ks)
        fid = {t: fidelity.cosine_to_teacher(emb[t], teacher_emb[t]) for t in a.towers}
        if pred is not None:
            fid["top1_agreement"] = fidelity.top1_agreement(pred, t_pred)
        if "fusion" in a.towers and emb["fusion"].shape[1] > 1:  # how far the head's distribution moved
            fid["kl_to_teacher"] = fidelity.kl_to_teacher(emb["fusion"], teacher_emb["fusion"])
        if "fusion" in a.towers and emb["fusion"].shape[1] == 1:  # one score per row: compare the score vectors
            fid["fusion"] = fidelity.cosine_to_teacher(emb["fusion"].T, teacher_emb["fusion"].T)
            fid["score_max_abs_diff"] = float(np.abs(emb["fusion"] - teacher_emb["fusion"]).max())
        entry = {"kind": f"{v.runtime}-{v.quantize if v.quantize != 'none' else 'fp32'}",
                 "model": a.model, "variant": v.model_dump(mode="json"),
                 "runtime": evaluations[name].runtime,
                 # gated: the variant's own towers (converted ones; every listed tower of a quantize: none variant)
                 "towers": {t: {"path": str(p.relative_to(run.run_dir)), "converted": a.owns(t),
                                "gated": t in v.towers, "bytes": p.stat().st_size, "sha256": a.sha256[t]}
                            for t, p in a.towers.items()},
                 "size_mb": _size_mb(a.towers), "accuracy": acc, "fidelity": fid,
                 "latency": {t: {k: _named(timings[t][k][a.key(t)], artifacts, t, name) for k in timings[t]}
                             for t in timings}}
        if "plan" in a.manifest:  # quantize auto: per tower the method, nodes kept float, why (plan.json)
            entry["plan"] = a.manifest.get("plan")
        if a.int8:
            target = a.int8["target"]
            entry["int8"] = {**a.int8, "checked_on": int8_kind()}
            if target == "tensorrt" and runtimes.get(v.runtime).engines:
                entry["int8"]["note"] = "made for TensorRT and checked on a TensorRT engine built on this machine"
            elif target == "tensorrt":
                entry["int8"]["note"] = ("made for TensorRT: checked on ONNX Runtime's CPU provider with its Q/DQ "
                                         "nodes run as written (TensorRT's int8 arithmetic on any CPU); its CPU "
                                         "latency says nothing about the GPU")
            elif target != int8_kind():
                entry["int8"]["note"] = (f"made for {target} CPUs, checked on a {int8_kind()} CPU: fidelity and "
                                         f"speed here describe this CPU, not the target")
        entry["budgets"] = gate.evaluate(entry, recipe.budgets_for(v))
        entry["verdict"] = gate.verdict(entry["budgets"])
        passed &= entry["verdict"] != "fail"
        rows[name] = entry
    fp = fingerprint()
    return {
        "schema_version": SCHEMA_VERSION,
        "name": recipe.name,
        "run_dir": str(run.run_dir),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "recipe": {"path": str(run.recipe_path), "sha256": sha256_file(run.recipe_path) if run.recipe_path.is_file() else None},
        "machine": {**fp, "threads": run.threads, "gpu": cuda_info()},
        "teacher": {**bundle.source, "task": task, "towers": list(bundle.towers)},
        "data": {"source": dataset.name, "kind": dataset.kind, "splits": {k: len(s) for k, s in dataset.splits.items()},
                 "eval_key": inputs.key, "classes": len(dataset.class_names),
                 "prompts": {"templates": dataset.info.get("templates"), "ensemble": ensemble},
                 **({"audio": {**bundle.audio_preprocess.clips(inputs.clip_seconds),
                               "preprocess": bundle.audio_preprocess.to_dict()}}
                    if inputs.clip_seconds is not None and bundle.audio_preprocess is not None else {})},
        "checks": {"runtime": recipe.checks.runtime, "batch_sizes": recipe.checks.batch_sizes,
                   "text_lengths": _lengths(timings), "audio_seconds": _audio_seconds(timings),
                   "rounds": recipe.checks.rounds, "warmup": recipe.checks.warmup,
                   "ort_spinning": False, "pause_after_pytorch_ms": round(CPU_SETTLE_S * 1e3)},
        "stages": run.stages,
        "models": models(run, pruning_latency(recipe, rows)),
        "artifacts": rows,
        "passed": passed,
        "failures": [gate.describe(n, r) for n, e in rows.items() for r in e["budgets"] if r["passed"] is False],
    }


def _named(row: dict, artifacts: dict, tower: str, own: str) -> dict:
    """A latency row with its pairwise speedups ('vs', keyed by graph path) keyed by the other artifacts' names."""
    vs = row.get("vs") or {}
    named = {n: vs[a.key(tower)] for n, a in artifacts.items()
             if n != own and tower in a.towers and a.key(tower) in vs}
    return {**{k: v for k, v in row.items() if k != "vs"}, **({"vs": named} if named else {})}


def pruning_latency(recipe, rows: dict) -> dict:
    """{stage: [{after, before, tower, point, speedup, speedup_ci95}]}: each pruning stage's exported graph against
    the graph of the model it was pruned from, same precision, from the same interleaved rounds."""
    names = ["teacher"] + [e.config.name for e in recipe.stages]
    out: dict = {}
    for i, entry in enumerate(recipe.stages):
        if entry.kind != "prune":
            continue
        stage, parent = names[i + 1], names[i]
        for a, ea in rows.items():
            for b, eb in rows.items():
                if ea.get("model") != stage or eb.get("model") != parent or \
                        ea["variant"]["quantize"] != eb["variant"]["quantize"]:
                    continue
                for t, points in ea["latency"].items():
                    if not (ea["towers"][t].get("gated") and eb["towers"].get(t, {}).get("gated")):
                        continue
                    for key, row in points.items():
                        if b in row.get("vs", {}):
                            out.setdefault(stage, []).append({"after": a, "before": b, "tower": t, "point": key,
                                                              **row["vs"][b]})
    return out


def _lengths(timings: dict) -> list[dict]:
    """The text lengths latency was measured at (text and fusion towers), with where each comes from."""
    seen = {}
    for point in [*timings.get("text", {}).values(), *timings.get("fusion", {}).values()]:
        row = point["teacher"]
        if row.get("seq_len"):
            seen[row["seq_len"]] = row["seq_len_from"]
    return [{"seq_len": n, "from": src} for n, src in sorted(seen.items())]


def _audio_seconds(timings: dict) -> list[dict]:
    """The clip lengths the audio tower was timed at (its window, or the eval durations and the recipe's)."""
    seen = {row["clip_s"]: row["seq_len_from"] for point in timings.get("audio", {}).values()
            for row in [point["teacher"]] if row.get("clip_s")}
    return [{"seconds": s, "from": src} for s, src in sorted(seen.items())]


def models(run, pruned_latency: dict | None = None) -> dict:
    """The models torch-side stages made: {name: {stage, student, history, seconds, ...}} from their manifests;
    a pruning stage's entry carries `pruning.latency` (pruning_latency)."""
    import json

    out = {}
    for entry in run.recipe.stages:
        kind, cfg = next((k, v) for k, v in entry if v is not None)
        m = json.loads((run.run_dir / "stages" / cfg.name / "manifest.json").read_text())
        out[cfg.name] = {"stage": kind, "dir": f"stages/{cfg.name}", "seconds": m.get("seconds"),
                         **{k: m[k] for k in ("student", "pruning", "history", "device", "precision", "processes")
                            if k in m}}
        if pruned_latency and cfg.name in pruned_latency and "pruning" in out[cfg.name]:
            out[cfg.name]["pruning"] = {**out[cfg.name]["pruning"], "latency": pruned_latency[cfg.name]}
    return out
