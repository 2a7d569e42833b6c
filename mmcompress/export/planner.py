"""`quantize: auto`: per tower, the fastest int8 plan that keeps the cosine a budget asks for.

1. Sensitivity (export/sensitivity.py, dynamic int8, calibration rows): every quantizable node ranked by the
   damage int8 does there. The calibration split is prepared like the eval rows (class prompts, captions, ...)
   so that plans are also judged on the task metric (Judge): at most the variant's `max_accuracy_drop` points
   lost against the fp32 graphs on the same rows; the eval rows stay for the checks.
2. Plans: for each method (dynamic, static), every node in int8, then the 1, 2, 4, 8, ... most harmful nodes
   kept float, until one keeps the target cosine to the fp32 graph on the calibration rows (min over rows) or
   `max_float_nodes` or the time budget is reached; then a bisection between the last miss and that pass finds
   the fewest nodes (in ranking order) that still keep it. Every plan tried is recorded.
3. Latency: every plan that meets the target (and each method's all-int8 plan, and the closest plan) is timed
   interleaved with the fp32 graph (checks/latency.measure_adaptive, 10 to 120 s) at the largest checked batch; the fastest one faster than fp32 wins (among plans whose
   speedup interval reaches the fastest one's, the one with the fewest float nodes). A plan slower than
   fp32 is never chosen: then the fp32 graph is kept and plan.json says why. When no plan meets the target,
   the closest one is written, so that the run's checks show (and gate) its miss.

plan.json in the variant folder records, per tower, the sensitivity, every plan tried (method, nodes kept
float with their PyTorch module names, cosine, speedup) and the choice with its reason.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from mmcompress.recipe import AutoVariant, DynamicVariant, StaticVariant


def _options(method: str, variant: AutoVariant) -> list[dict]:
    """The settings compared on a method's all-int8 plan: dynamic has one; static, every calibration method x
    per-channel setting the variant lists."""
    if method == "dynamic":
        return [{}]
    return [{"calibration": c, **({"percentile": variant.percentile} if c == "percentile" else {}), "per_channel": pc}
            for pc in variant.per_channel for c in variant.calibration]


def label(method: str, settings: dict | None) -> str:
    """'dynamic', 'static minmax per-channel', 'static percentile 99.999 per-tensor'."""
    if not settings:
        return method
    cal = settings["calibration"] + (f" {settings['percentile']:g}" if "percentile" in settings else "")
    return f"{method} {cal} {'per-channel' if settings['per_channel'] else 'per-tensor'}"


def _quantizer(method: str, variant: AutoVariant, int8: dict, calib: dict[str, np.ndarray], settings: dict | None = None):
    from mmcompress.export import quantize_onnx

    if method == "dynamic":
        cfg = DynamicVariant(name=variant.name, quantize="dynamic")
        return lambda src, dst, include=None, exclude=None: quantize_onnx.quantize_dynamic(
            src, dst, cfg, int8, include=include, exclude=exclude)
    settings = settings or {}
    cfg = StaticVariant(name=variant.name, quantize="static", preprocess=False,  # node names must survive
                        per_channel=settings.get("per_channel", True),
                        calibration={"method": settings.get("calibration", "minmax"),
                                     "percentile": settings.get("percentile", 99.999)})
    return lambda src, dst, include=None, exclude=None: quantize_onnx.quantize_static(
        src, dst, cfg, int8, calib, exclude=exclude)


class Judge:
    """The task metric on the planning rows (the calibration split, prepared like the eval rows): one tower's
    candidate outputs with the other towers' fp32 outputs; a plan may lose at most `max_drop` points of the
    primary metric against the fp32 graphs on the same rows (None: not judged on the metric)."""

    def __init__(self, inputs, src_dir: Path, towers: list[str], threads: int, metric_args: tuple, max_drop: float | None):
        from mmcompress.runtimes.base import run_batched
        from mmcompress.runtimes.onnxruntime import OrtSession

        self.inputs, self.metric_args, self.max_drop = inputs, metric_args, max_drop
        self.fp32 = {t: run_batched(OrtSession(src_dir / f"{t}.onnx", threads), inputs.feeds[t], trim=inputs.trim[t])
                     for t in towers}
        self.reference = self.primary(None, None)

    def primary(self, tower: str | None, out: np.ndarray | None) -> dict | None:
        from mmcompress.checks import tasks

        task, ensemble, ks, knn_k = self.metric_args
        emb = {**self.fp32, **({tower: out} if tower else {})}
        return tasks.metrics(task, emb, self.inputs, ensemble, ks, knn_k)[0]["primary"]

    def rule(self) -> str:
        """' and at most 0.5 points lost in zero_shot_top1', or '' when the metric is not judged."""
        if self.max_drop is None or not self.reference:
            return ""
        return f" and at most {self.max_drop:g} points lost in {self.reference['metric']}"

    def keeps(self, drop: float | None) -> bool:
        """Whether a plan's drop in points is within max_drop (always, when the metric is not judged)."""
        return self.max_drop is None or drop is None or drop <= self.max_drop

    def drop(self, tower: str, out: np.ndarray) -> tuple[dict | None, float | None]:
        """-> (the candidate's primary metric, its drop in points against the fp32 graphs)."""
        p = self.primary(tower, out)
        return p, (self.reference["value"] - p["value"]) if p and self.reference else None


def _float_counts(limit: int, n: int) -> list[int]:
    """0, 1, 2, 4, ... up to min(limit, n), the last one included."""
    top = min(limit, n)
    out, k = [0], 1
    while k < top:
        out.append(k)
        k *= 2
    return out + ([top] if top > 0 else [])


def plan_tower(tower: str, src: Path, dst: Path, variant: AutoVariant, int8: dict, calib: dict[str, np.ndarray],
               judge: Judge, target: float, batch: int, threads: int, update=None) -> dict:
    from mmcompress.checks.fidelity import cosine_to_teacher
    from mmcompress.checks.latency import feeds_at, measure_adaptive, summarize
    from mmcompress.export import quantize_onnx, sensitivity
    from mmcompress.runtimes.base import run_batched, trim_padding
    from mmcompress.runtimes.onnxruntime import OrtSession

    t_end = time.perf_counter() + variant.max_seconds
    work = Path(tempfile.mkdtemp(prefix=f"mmcompress-plan-{tower}-"))
    probe = None
    try:
        # keep_float's nodes first: a pattern that chooses nothing fails before minutes of sensitivity
        forced = quantize_onnx.float_nodes(src, variant.keep_float, f"export.variants[{variant.name}].keep_float")
        rows, trim = judge.inputs.feeds[tower], judge.inputs.trim[tower]  # the planning rows (as the checks' rows)
        probe = sensitivity.Probe(src, rows, threads, _quantizer("dynamic", variant, int8, calib), trim=trim,
                                  ref=judge.fp32[tower])  # the judge ran the fp32 graph on these rows already
        sens = sensitivity.analyse(probe, tower, "dynamic", variant.top_blocks, variant.top_nodes,
                                   progress=lambda d, n: update and update(d, n, "sensitivity"))
        ranking = [n for n in sens.ranking() if n not in forced]
        nodes = {n.name: n for n in sens.nodes}
        tried, stopped = [], None

        def attempt(method: str, settings: dict, k: int) -> dict:
            keep = forced + ranking[:k]  # keep_float's nodes in every plan, then the k most harmful
            path = work / f"plan-{len(tried)}.onnx"
            _quantizer(method, variant, int8, calib, settings)(src, path, exclude=keep)
            out = run_batched(OrtSession(path, threads), rows, trim=trim)
            cos = cosine_to_teacher(out, probe.ref)
            metric, drop = judge.drop(tower, out)
            ok = cos["min"] >= target and judge.keeps(drop)
            tried.append({"method": method, "settings": settings, "k": k, "float_nodes": keep, "cosine": cos, "metric": metric,
                          "drop": drop, "passed": ok, "path": path})
            if update:
                update(len(tried), None, f"{label(method, settings)}, {k} float: min cosine {cos['min']:.4f}"
                                         + (f", {metric['metric']} {drop:+.2f} pts" if metric else ""))
            return tried[-1]

        def out_of_time(method: str) -> bool:
            nonlocal stopped
            if tried and time.perf_counter() > t_end:  # the first plan is always tried: there is an answer
                stopped = f"time budget of {variant.max_seconds:g} s reached during the {method} plans"
            return stopped is not None

        for method in variant.methods:
            firsts = []  # every node int8, once per setting of the method: the best setting goes on
            for settings in _options(method, variant):
                if out_of_time(method):
                    break
                firsts.append(attempt(method, settings, 0))
            if stopped or not firsts:
                break
            best = max(firsts, key=lambda p: (p["passed"], p["cosine"]["min"]))
            if best["passed"]:
                continue
            failed = 0  # the longest prefix of the ranking kept float that missed the target
            for k in _float_counts(variant.max_float_nodes, len(ranking))[1:]:
                if out_of_time(method):
                    break
                if not attempt(method, best["settings"], k)["passed"]:
                    failed = k
                    continue
                lo, hi = failed + 1, k  # bounded search: the fewest float nodes (a prefix) that still pass
                while lo < hi and time.perf_counter() < t_end:
                    mid = (lo + hi) // 2
                    if attempt(method, best["settings"], mid)["passed"]:
                        hi = mid
                    else:
                        lo = mid + 1
                break
            if stopped:
                break
        # latency, interleaved with the fp32 graph: the plans that pass, every method's all-int8 plan and the
        # closest plan (the Pareto plot's points); plans that missed on the way are not worth the seconds
        closest = max(tried, key=lambda p: (p["cosine"]["min"] >= target, judge.keeps(p["drop"]), p["cosine"]["min"]))
        timed_plans = [i for i, p in enumerate(tried) if p["passed"] or p["k"] == 0 or p is closest]
        feeds = feeds_at(calib, batch, None)  # timed on calibration rows at the largest checked batch
        feeds = trim_padding(feeds) if trim else feeds
        sessions = {"fp32": OrtSession(src, threads), **{f"p{i}": OrtSession(tried[i]["path"], threads) for i in timed_plans}}
        times, why = measure_adaptive(sessions, feeds, max_seconds=min(120.0, max(10.0, t_end - time.perf_counter())))
        timed = summarize(times, "fp32")
        for i, p in enumerate(tried):
            r = timed.get(f"p{i}", {})
            p.update(ms=r.get("median_ms"), speedup=r.get("speedup"), speedup_ci95=r.get("speedup_ci95"))
        passing = [p for p in tried if p["passed"]]
        faster = [p for p in passing if p["speedup"] > 1.0]
        if faster:
            best = max(faster, key=lambda p: p["speedup"])
            # plans whose interval reaches the fastest one's are as fast as far as timing can tell: the one with the
            # fewest float nodes (the most int8, the smallest file) is taken among them
            tied = [p for p in faster if p["speedup_ci95"][1] >= best["speedup_ci95"][0]]
            chosen = min(tied, key=lambda p: (len(p["float_nodes"]), -p["speedup"]))
            reason = (f"the fastest plan with min cosine >= {target}{judge.rule()} on the calibration rows: "
                      f"{label(chosen['method'], chosen['settings'])} "
                      f"with {len(chosen['float_nodes'])} node(s) float, {chosen['speedup']:.2f}x the fp32 graph"
                      + (f" (as fast, within timing noise, as the fastest: {best['speedup']:.2f}x with "
                         f"{len(best['float_nodes'])} float)" if chosen is not best else ""))
            shutil.copyfile(chosen["path"], dst)
        elif passing:
            chosen = None
            reason = (f"every plan with min cosine >= {target}{judge.rule()} was slower than fp32 here (best "
                      f"{max(p['speedup'] for p in passing):.2f}x): the fp32 graph is kept")
            shutil.copyfile(src, dst)
        else:
            chosen = closest
            reason = (f"no plan kept min cosine >= {target}{judge.rule()} on the calibration rows (closest: "
                      f"{label(chosen['method'], chosen['settings'])} with {len(chosen['float_nodes'])} node(s) float, min cosine "
                      f"{chosen['cosine']['min']:.4f}" + (f", {chosen['drop']:+.2f} pts" if chosen["drop"] is not None else "")
                      + "); it is written so that the checks show its miss")
            shutil.copyfile(chosen["path"], dst)

        def describe(p):
            return {"method": p["method"], "settings": p["settings"], "label": label(p["method"], p["settings"]),
                    "float_nodes": [{"node": n, "module": nodes[n].module} for n in p["float_nodes"]],
                    "cosine": p["cosine"], "metric": p["metric"], "drop": p["drop"], "passed": p["passed"],
                    "ms": p["ms"], "speedup": p["speedup"],
                    "speedup_ci95": p["speedup_ci95"], "chosen": p is chosen}
        return {"target_cosine": target, "max_accuracy_drop": judge.max_drop, "reference": judge.reference,
                "batch": batch, "timing": why, "stopped": stopped, "reason": reason,
                "chosen": describe(chosen) if chosen else {"method": "fp32", "settings": {}, "label": "fp32",
                                                           "float_nodes": [], "speedup": 1.0},
                "plans": [describe(p) for p in tried], "sensitivity": sens.to_json()}
    finally:
        if probe is not None:
            probe.close()
        shutil.rmtree(work, ignore_errors=True)


def _file_entry(tower: str, out: Path, chosen: dict, int8: dict, reason: str) -> dict:
    """The manifest entry of a planned tower graph (searched or reused)."""
    from mmcompress.export.onnx import input_spec

    return {"tower": tower, "format": "onnx", "precision": f"auto ({chosen['method']})", "io": input_spec(out),
            "parent": f"export-onnx/{tower}.onnx",
            "quantizer": {"method": "mmcompress.planner", "chosen": chosen["method"],
                          "settings": chosen.get("settings") or {}, **int8,
                          "float_nodes": [n["module"] or n["node"] for n in chosen["float_nodes"]], "reason": reason}}


def stage(variant: AutoVariant, src_dir: Path, inputs, folder: Path, int8: dict, target: float,
          max_drop: float | None, batch: int, threads: int, metric_args: tuple) -> tuple[dict, dict]:
    """Plan each tower the variant names: folder/<tower>.onnx and folder/plan.json. inputs: the calibration
    split prepared as the checks prepare eval rows (checks.prepare_inputs(split='calibration')); metric_args:
    (task, prompt ensemble, recall ks, knn k) as the checks use them."""
    from mmcompress.artifact import atomic_path, write_json
    from mmcompress.progress import bar

    files, plans = {}, {}
    if variant.plan:
        return reuse(variant, src_dir, inputs, folder, int8, threads)
    judge = Judge(inputs, src_dir, [t for t in inputs.feeds if (src_dir / f"{t}.onnx").exists()], threads,
                  metric_args, max_drop)
    for tower in variant.towers:
        src, out = src_dir / f"{tower}.onnx", folder / f"{tower}.onnx"
        if not src.exists():
            continue
        with atomic_path(out) as tmp, bar(f"planning the {tower} tower's precision") as update:
            plans[tower] = plan_tower(tower, src, tmp, variant, int8, inputs.calib[tower], judge, target, batch,
                                      threads, update)
        files[out.name] = _file_entry(tower, out, plans[tower]["chosen"], int8, plans[tower]["reason"])
    write_json(folder / "plan.json", plans)
    return files, {"plan": {t: summary(p) for t, p in plans.items()}}


def read_plan(path: Path, where: str) -> dict:
    import json

    from mmcompress.errors import RecipeError

    try:
        plan = json.loads(Path(path).read_text())
        for tower, p in plan.items():
            p["chosen"]["method"], [n["node"] for n in p["chosen"]["float_nodes"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise RecipeError(f"{where}: {path} is not a plan.json an mmcompress run wrote ({type(e).__name__}: {e}); "
                          f"give variants/<name>/plan.json of a run with a quantize: auto variant") from None
    return plan


def reuse(variant: AutoVariant, src_dir: Path, inputs, folder: Path, int8: dict, threads: int) -> tuple[dict, dict]:
    """Apply the chosen plan of variant.plan (already resolved to an absolute path) to each tower, no search."""
    from mmcompress.artifact import atomic_path, write_json
    from mmcompress.errors import RecipeError
    from mmcompress.export import sensitivity

    recorded = read_plan(Path(variant.plan), "plan")
    files, plans = {}, {}
    for tower in variant.towers:
        src, out = src_dir / f"{tower}.onnx", folder / f"{tower}.onnx"
        if not src.exists():
            continue
        if tower not in recorded:
            raise RecipeError(f"{variant.plan}: the plan has no {tower} tower (it has {', '.join(recorded)}); "
                              f"list only those towers in this variant, or plan again without `plan`")
        chosen = recorded[tower]["chosen"]
        keep = [n["node"] for n in chosen["float_nodes"]]
        missing = sorted(set(keep) - {n.name for n in sensitivity.quantizable(src)})
        if missing:
            raise RecipeError(f"{variant.plan}: node(s) {', '.join(missing)} of the {tower} plan are not quantizable "
                              f"nodes of this graph ({src}): the plan was made for another model or export; plan "
                              f"again without `plan`")
        with atomic_path(out) as tmp:
            if chosen["method"] == "fp32":
                shutil.copyfile(src, tmp)
            else:
                _quantizer(chosen["method"], variant, int8, inputs.calib[tower], chosen.get("settings"))(
                    src, tmp, exclude=keep)
        reason = (f"reused from {variant.plan}: {label(chosen['method'], chosen.get('settings'))} with "
                  f"{len(keep)} node(s) float")
        plans[tower] = {"reason": reason, "chosen": {**chosen, "chosen": True}, "target_cosine": None,
                        "max_accuracy_drop": None, "stopped": None, "plans": [], "reused": str(variant.plan)}
        files[out.name] = _file_entry(tower, out, chosen, int8, reason)
    write_json(folder / "plan.json", plans)
    return files, {"plan": {t: {k: p[k] for k in ("reason", "chosen", "target_cosine", "max_accuracy_drop", "stopped")}
                            for t, p in plans.items()}}


def summary(plan: dict, top: int = 12) -> dict:
    """What the report keeps of a tower's plan: the choice and why, every plan tried in brief (the Pareto
    plot), and the `top` most sensitive nodes."""
    def alone(row):
        return row.get("alone", {}).get("mean")
    return {**{k: plan[k] for k in ("reason", "chosen", "target_cosine", "max_accuracy_drop", "stopped")},
            "plans": [{"method": p["method"], "label": p["label"], "float_nodes": len(p["float_nodes"]), "cosine_min": p["cosine"]["min"],
                       "drop": p["drop"],
                       "speedup": p["speedup"], "passed": p["passed"], "chosen": p["chosen"]} for p in plan["plans"]],
            "sensitive": [{"module": r["module"] or r["node"], "alone_cosine": alone(r),
                           "leave_out_cosine": r.get("leave_out", {}).get("mean")}
                          for r in plan["sensitivity"]["nodes"][:top]],
            "full_int8_cosine": plan["sensitivity"]["full_int8"]}


def handle(variant: AutoVariant, ctx) -> "Artifact":
    """The variant handler (export.handlers) for quantize: auto: a plan searched on the calibration split, or
    one reused (`plan:`, keyed by its content). The plan depends on the budgets and on latency measured on this
    machine, so its stage is keyed by the CPU's int8 kind."""
    from mmcompress.artifact import sha256_file
    from mmcompress.checks.evaluate import prepare_inputs
    from mmcompress.export import graph_artifact, int8_targets

    recipe = ctx.recipe
    int8 = int8_targets.settings(variant, recipe.export.target)
    budgets = recipe.budgets_for(variant)
    plan = {"target_cosine": budgets.min_cosine or variant.target_cosine, "max_drop": budgets.max_accuracy_drop,
            "batch": max(recipe.checks.batch_sizes), "threads": ctx.threads}
    cfg = {**variant.model_dump(exclude={"budgets", "runtime"}), "int8": int8}  # the plan as the recipe names it
    if variant.plan:  # reused: keyed by the plan's content, applied from its absolute path
        path = (recipe.base / variant.plan).expanduser().resolve()
        variant = variant.model_copy(update={"plan": str(path)})
        plan = {**plan, "reused": sha256_file(path)}
    parents = {"export-onnx": ctx.export_manifest["cache_key"], "data": ctx.inputs.key}
    metric_args = (ctx.bundle.task, recipe.data.prompts.ensemble, recipe.checks.recall_k, recipe.checks.knn_k)
    m = ctx.run.stage(f"variant {variant.name}", ctx.folder, {"config": {**cfg, **plan}, "parents": parents},
                      lambda d: stage(variant, ctx.export_dir, prepare_inputs(ctx.bundle, ctx.dataset,
                                                                              split="calibration"),
                                      d, int8, plan["target_cosine"], plan["max_drop"], plan["batch"],
                                      plan["threads"], metric_args),
                      measured=True)
    return graph_artifact(variant, ctx, m, int8)
