"""`quantize: auto`: per tower, the fastest plan that keeps the cosine a budget asks for, on the runtime that
is fastest over the variant's towers (export/plan_search.py does the search).

1. Sensitivity (export/sensitivity.py, dynamic int8, calibration rows): every quantizable node ranked by the
   damage int8 does there. The calibration split is prepared like the eval rows (class prompts, captions, ...)
   so that plans are also judged on the task metric (Judge): at most the variant's `max_accuracy_drop` points
   lost against the fp32 graphs on the same rows; the eval rows stay for the checks.
2. Plans: for each method (dynamic, static, nncf: NNCF's post-training quantizer with its transformer preset,
   SmoothQuant included), every node in int8, then the 1, 2, 4, 8, ... most harmful nodes kept float, until one
   keeps the target cosine to the fp32 graph on the calibration rows (min over rows) or `max_float_nodes` or the
   time budget is reached; then a bisection between the last miss and that pass finds the fewest nodes (in
   ranking order) that still keep it. Judged on the variant's runtime (the first planning runtime).
3. Runtimes (`runtime: auto`: every planning runtime installed here, runtimes.Runtime.plans): on each other
   runtime the plans worth timing are judged again, and the fp32 graph at each precision the runtime offers
   (bf16 on OpenVINO where the CPU has AVX-512 BF16 or AMX) is a candidate too.
4. Latency: every plan that meets the target (and each method's all-int8 plan, the closest plan, and the other
   runtimes' candidates) is timed interleaved with the fp32 graph (checks/latency.measure_adaptive, 10 to
   120 s) at the largest checked batch. Per runtime, the fastest candidate faster than that runtime's fp32
   graph wins (among those whose speedup interval reaches the fastest one's, the one with the fewest float
   nodes); none faster: the fp32 graph is kept and plan.json says why; none passing: the closest one is
   written, so that the run's checks show (and gate) its miss. The variant runs on the runtime with the fewest
   towers missing and then the least time over its towers.

plan.json in the variant folder records, per tower, the sensitivity, every candidate tried (method, runtime,
precision, nodes kept float with their PyTorch module names, cosine, speedup), the runtimes' totals and the
choice with its reason.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mmcompress.export.plan_search import Judge, Search, label, quantizer
from mmcompress.recipe import AutoVariant

__all__ = ["Judge", "label", "stage", "reuse", "read_plan", "summary", "handle"]


def search_tower(tower: str, src: Path, work: Path, variant: AutoVariant, int8: dict, calib: dict[str, np.ndarray],
                 judge: Judge, target: float, batch: int, threads: int, routes: list, update=None) -> Search:
    """Sensitivity, the int8 plans on the first planning runtime, the other runtimes' candidates, timing."""
    from mmcompress.export import quantize_onnx, sensitivity

    search = Search(tower, src, work, judge, target, threads, variant.max_seconds, update)
    # keep_float's nodes first: a pattern that chooses nothing fails before minutes of sensitivity
    forced = quantize_onnx.float_nodes(src, variant.keep_float, f"export.variants[{variant.name}].keep_float")
    probe = sensitivity.Probe(src, search.rows, threads, quantizer("dynamic", variant, int8, calib),
                              trim=search.trim, ref=judge.fp32[tower])  # the judge ran the fp32 graph already
    try:
        search.sensitivity = sensitivity.analyse(probe, tower, "dynamic", variant.top_blocks, variant.top_nodes,
                                                 progress=lambda d, n: update and update(d, n, "sensitivity"))
    finally:
        probe.close()
    ranking = [n for n in search.sensitivity.ranking() if n not in forced]
    search.int8(variant, routes[0], ranking, forced, lambda m, st: quantizer(m, variant, int8, calib, st))
    search.cross_check(routes, routes[0])
    search.timing = search.time(batch, calib, routes[0])
    return search


def best_on(search: Search, runtime, first) -> tuple[dict | None, str]:
    """The tower's choice if it runs on `runtime`: (the candidate, or None for the fp32 graph at fp32, why).
    The fastest passing candidate faster than the runtime's fp32 graph, among those whose speedup interval
    reaches the fastest one's the one with the fewest float nodes; passing but none faster: the fp32 graph;
    none passing: the closest, written so that the checks show its miss."""
    rule = f"min cosine >= {search.target}{search.judge.rule()}"
    on = [p for p in search.tried if p["runtime"] == runtime.name and "error" not in p]
    fp32 = 1.0 if runtime is first else next((p["speedup"] for p in on if p["method"] == "fp32"), 1.0)
    quantized = [p for p in on if p["method"] != "fp32"]
    passing = [p for p in quantized if p["passed"]]
    faster = [p for p in passing if p["speedup"] is not None and p["speedup"] > fp32]
    if faster:
        best = max(faster, key=lambda p: p["speedup"])
        # plans whose interval reaches the fastest one's are as fast as far as timing can tell: the one with the
        # fewest float nodes (the most int8, the smallest file) is taken among them
        tied = [p for p in faster if p["speedup_ci95"][1] >= best["speedup_ci95"][0]]
        chosen = min(tied, key=lambda p: (len(p["float_nodes"]), -p["speedup"]))
        return chosen, (f"the fastest plan with {rule} on the calibration rows: {_named(chosen)} "
                        f"with {len(chosen['float_nodes'])} node(s) float, {chosen['speedup']:.2f}x the fp32 graph"
                        + (f" (as fast, within timing noise, as the fastest: {best['speedup']:.2f}x with "
                           f"{len(best['float_nodes'])} float)" if chosen is not best else ""))
    if passing:
        return None, (f"every plan with {rule} was slower than fp32 here (best "
                      f"{max(p['speedup'] or 0 for p in passing):.2f}x): the fp32 graph is kept")
    chosen = search.closest(quantized or on)
    return chosen, (f"no plan kept {rule} on the calibration rows (closest: {_named(chosen)} with "
                    f"{len(chosen['float_nodes'])} node(s) float, min cosine {chosen['cosine']['min']:.4f}"
                    + (f", {chosen['drop']:+.2f} pts" if chosen["drop"] is not None else "")
                    + "); it is written so that the checks show its miss")


def _named(p: dict) -> str:
    return label(p["method"], p["settings"], None, p.get("precision"))


def choose_runtime(searches: dict[str, Search], routes: list) -> tuple[object, dict]:
    """The planning runtime the variant runs on: the fewest towers without a passing candidate there, then the
    least time over the towers (each tower's choice on it, or its fp32 graph). -> (runtime, ms per runtime)."""
    first = routes[0]
    cost = {}
    for r in routes:
        missed, ms = 0, 0.0
        for s in searches.values():
            chosen, _ = best_on(s, r, first)
            fp32 = s.reference_ms if r is first else next((p["ms"] for p in s.tried if p["runtime"] == r.name
                                                          and p["method"] == "fp32" and p.get("ms")), s.reference_ms)
            missed += chosen is not None and not chosen["passed"]
            ms += chosen["ms"] if chosen is not None and chosen["passed"] else fp32
        cost[r.name] = (missed, round(ms, 3))
    best = min(routes, key=lambda r: cost[r.name])
    return best, cost


def describe(p: dict, chosen: dict | None, nodes: dict) -> dict:
    return {"method": p["method"], "settings": p["settings"], "label": _named(p), "runtime": p["runtime"],
            "precision": p["precision"], "float_nodes": [{"node": n, "module": nodes[n].module} for n in p["float_nodes"]],
            "cosine": p["cosine"], "metric": p["metric"], "drop": p["drop"], "passed": p["passed"],
            "ms": p.get("ms"), "speedup": p.get("speedup"), "speedup_ci95": p.get("speedup_ci95"),
            "chosen": p is chosen, **({"error": p["error"]} if "error" in p else {})}


def write_tower(search: Search, runtime, first, routes: list, cost: dict, dst: Path, batch: int) -> dict:
    """Write the tower's chosen graph to dst; -> its plan.json entry."""
    import shutil

    chosen, reason = best_on(search, runtime, first)
    shutil.copyfile(chosen["path"] if chosen is not None and chosen["method"] not in ("fp32", "bf16")
                    else search.src, dst)
    if len(routes) > 1:
        reason += (f"; on {runtime.name}, the planning runtime fastest over the variant's towers "
                   f"({', '.join(f'{n} {ms:.1f} ms' for n, (_, ms) in cost.items())})")
    nodes = {n.name: n for n in search.sensitivity.nodes}
    kept = {"method": "fp32", "settings": {}, "label": "fp32", "float_nodes": [], "runtime": runtime.name,
            "precision": "fp32", "speedup": 1.0 if runtime is first else next(
                (p["speedup"] for p in search.tried if p["runtime"] == runtime.name and p["method"] == "fp32"), None)}
    j = search.judge
    return {"target_cosine": search.target, "max_accuracy_drop": j.max_drop, "reference": j.reference,
            "batch": batch, "timing": search.timing, "stopped": search.stopped, "reason": reason,
            "runtime": runtime.name, "runtimes": {n: {"towers_missed": m, "ms": ms} for n, (m, ms) in cost.items()},
            "chosen": describe(chosen, chosen, nodes) if chosen else kept,
            "plans": [describe(p, chosen, nodes) for p in search.tried], "sensitivity": search.sensitivity.to_json()}


def _file_entry(tower: str, out: Path, chosen: dict, int8: dict, reason: str) -> dict:
    """The manifest entry of a planned tower graph (searched or reused); `inference_precision`: what the
    runtime is asked to compute the graph in (bf16: the fp32 graph run at bf16)."""
    from mmcompress.export.onnx import input_spec

    return {"tower": tower, "format": "onnx", "precision": f"auto ({chosen['method']})", "io": input_spec(out),
            "parent": f"export-onnx/{tower}.onnx", "inference_precision": chosen.get("precision") or "fp32",
            "quantizer": {"method": "mmcompress.planner", "chosen": chosen["method"],
                          "settings": chosen.get("settings") or {}, **int8, "runtime": chosen.get("runtime"),
                          "float_nodes": [n["module"] or n["node"] for n in chosen["float_nodes"]], "reason": reason}}


def stage(variant: AutoVariant, src_dir: Path, inputs, folder: Path, int8: dict, target: float,
          max_drop: float | None, batch: int, threads: int, metric_args: tuple, routes: list) -> tuple[dict, dict]:
    """Plan each tower the variant names: folder/<tower>.onnx and folder/plan.json. inputs: the calibration
    split prepared as the checks prepare eval rows (checks.prepare_inputs(split='calibration')); metric_args:
    (task, prompt ensemble, recall ks, knn k) as the checks use them; routes: the runtimes planned on (the
    first judges the int8 search). -> (files, {"plan": ..., "runtime": the runtime chosen})."""
    import shutil
    import tempfile

    from mmcompress.artifact import atomic_path, write_json
    from mmcompress.progress import bar

    if variant.plan:
        return reuse(variant, src_dir, inputs, folder, int8, routes)
    judge = Judge(inputs, src_dir, [t for t in inputs.feeds if (src_dir / f"{t}.onnx").exists()], threads,
                  metric_args, max_drop)
    work = Path(tempfile.mkdtemp(prefix=f"mmcompress-plan-{variant.name}-"))
    try:
        searches = {}
        for tower in variant.towers:
            if (src_dir / f"{tower}.onnx").exists():
                with bar(f"planning the {tower} tower's precision") as update:
                    (work / tower).mkdir()
                    searches[tower] = search_tower(tower, src_dir / f"{tower}.onnx", work / tower, variant, int8,
                                                   inputs.calib[tower], judge, target, batch, threads, routes, update)
        runtime, cost = choose_runtime(searches, routes)
        files, plans = {}, {}
        for tower, search in searches.items():
            out = folder / f"{tower}.onnx"
            with atomic_path(out) as tmp:
                plans[tower] = write_tower(search, runtime, routes[0], routes, cost, tmp, batch)
            files[out.name] = _file_entry(tower, out, plans[tower]["chosen"], int8, plans[tower]["reason"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_json(folder / "plan.json", plans)
    return files, {"plan": {t: summary(p) for t, p in plans.items()}, "runtime": runtime.name}


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


def reuse(variant: AutoVariant, src_dir: Path, inputs, folder: Path, int8: dict, routes: list) -> tuple[dict, dict]:
    """Apply the chosen plan of variant.plan (already resolved to an absolute path) to each tower, no search: its
    method, float nodes, runtime and precision."""
    import shutil

    from mmcompress.artifact import atomic_path, write_json
    from mmcompress.errors import RecipeError
    from mmcompress.export import sensitivity

    recorded = read_plan(Path(variant.plan), "plan")
    files, plans, ran = {}, {}, set()
    for tower in variant.towers:
        src, out = src_dir / f"{tower}.onnx", folder / f"{tower}.onnx"
        if not src.exists():
            continue
        if tower not in recorded:
            raise RecipeError(f"{variant.plan}: the plan has no {tower} tower (it has {', '.join(recorded)}); "
                              f"list only those towers in this variant, or plan again without `plan`")
        chosen = {"runtime": routes[0].name, "precision": "fp32", **recorded[tower]["chosen"]}  # older plans: ORT
        if chosen["runtime"] not in {r.name for r in routes}:
            raise RecipeError(f"{variant.plan}: the {tower} plan runs on {chosen['runtime']}, and this variant "
                              f"(runtime {variant.runtime}) plans on {', '.join(r.name for r in routes)} here; set "
                              f"runtime: auto or {chosen['runtime']} (installed), or plan again without `plan`")
        ran.add(chosen["runtime"])
        keep = [n["node"] for n in chosen["float_nodes"]]
        missing = sorted(set(keep) - {n.name for n in sensitivity.quantizable(src)})
        if missing:
            raise RecipeError(f"{variant.plan}: node(s) {', '.join(missing)} of the {tower} plan are not quantizable "
                              f"nodes of this graph ({src}): the plan was made for another model or export; plan "
                              f"again without `plan`")
        with atomic_path(out) as tmp:
            if chosen["method"] in ("fp32", "bf16"):
                shutil.copyfile(src, tmp)
            else:
                quantizer(chosen["method"], variant, int8, inputs.calib[tower], chosen.get("settings"))(
                    src, tmp, exclude=keep)
        reason = (f"reused from {variant.plan}: {_named(chosen)} with {len(keep)} node(s) float"
                  + (f" on {chosen['runtime']}" if len(routes) > 1 else ""))
        plans[tower] = {"reason": reason, "chosen": {**chosen, "chosen": True}, "target_cosine": None,
                        "max_accuracy_drop": None, "stopped": None, "plans": [], "reused": str(variant.plan),
                        "runtime": chosen["runtime"]}
        files[out.name] = _file_entry(tower, out, chosen, int8, reason)
    if len(ran) > 1:
        raise RecipeError(f"{variant.plan}: its towers run on {', '.join(sorted(ran))}; a variant runs on one "
                          f"runtime: plan again without `plan`")
    write_json(folder / "plan.json", plans)
    return files, {"plan": {t: {k: p[k] for k in ("reason", "chosen", "target_cosine", "max_accuracy_drop", "stopped")}
                            for t, p in plans.items()}, "runtime": next(iter(ran), routes[0].name)}


def summary(plan: dict, top: int = 12) -> dict:
    """What the report keeps of a tower's plan: the choice and why, every plan tried in brief (the Pareto
    plot), and the `top` most sensitive nodes."""
    def alone(row):
        return row.get("alone", {}).get("mean")
    return {**{k: plan[k] for k in ("reason", "chosen", "target_cosine", "max_accuracy_drop", "stopped")},
            "runtime": plan["runtime"], "runtimes": plan["runtimes"],
            "plans": [{"method": p["method"], "label": p["label"], "runtime": p["runtime"],
                       "float_nodes": len(p["float_nodes"]), "cosine_min": p["cosine"]["min"], "drop": p["drop"],
                       "speedup": p["speedup"], "passed": p["passed"], "chosen": p["chosen"]} for p in plan["plans"]],
            "sensitive": [{"module": r["module"] or r["node"], "alone_cosine": alone(r),
                           "leave_out_cosine": r.get("leave_out", {}).get("mean")}
                          for r in plan["sensitivity"]["nodes"][:top]],
            "full_int8_cosine": plan["sensitivity"]["full_int8"]}


def handle(variant: AutoVariant, ctx) -> "Artifact":
    """The variant handler (export.handlers) for quantize: auto: a plan searched on the calibration split, or
    one reused (`plan:`, keyed by its content). The plan depends on the budgets, on the runtimes installed here
    and on latency measured on this machine, so its stage is keyed by those and by the CPU's int8 kind. With
    `runtime: auto` the artifact runs on the runtime the plan chose."""
    from mmcompress import runtimes
    from mmcompress.artifact import sha256_file
    from mmcompress.checks.evaluate import prepare_inputs
    from mmcompress.export import graph_artifact, int8_targets, variant_config

    recipe = ctx.recipe
    int8 = int8_targets.settings(variant, recipe.export.target)
    budgets = recipe.budgets_for(variant)
    routes = runtimes.get(variant.runtime).plan_runtimes()
    plan = {"target_cosine": budgets.min_cosine or variant.target_cosine, "max_drop": budgets.max_accuracy_drop,
            "batch": max(recipe.checks.batch_sizes), "threads": ctx.threads,
            "routes": [{**r.device(), "precisions": list(r.precisions())} for r in routes]}
    cfg = variant_config(variant, int8=int8)  # the plan as the recipe names it
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
                                      plan["threads"], metric_args, routes),
                      measured=True)
    if runtimes.get(variant.runtime).resolved_by_plan:
        variant = variant.model_copy(update={"runtime": m["runtime"]})
    return graph_artifact(variant, ctx, m, int8)
