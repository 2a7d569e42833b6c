"""The search behind `quantize: auto`, one tower at a time (export/planner.py chooses from what it finds).

Candidates are (graph, runtime, precision) triples, each judged on the planning rows (min cosine to the fp32
graph on ONNX Runtime, the task metric through Judge) and timed interleaved with that fp32 graph:
- int8 plans per method (dynamic, static, nncf), every node int8 and then the k most harmful kept float, judged
  on the first planning runtime (search_int8);
- on every other planning runtime, the int8 plans worth timing (those that pass, each method's all-int8 plan,
  the closest one) judged again there, and the fp32 graph at each precision the runtime offers here (fp32;
  bf16 on OpenVINO where the CPU runs bf16) (cross_check).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mmcompress.recipe import AutoVariant, DynamicVariant, StaticVariant


def options(method: str, variant: AutoVariant) -> list[dict]:
    """The settings compared on a method's all-int8 plan: dynamic and nncf have one; static, every calibration
    method x per-channel setting the variant lists."""
    if method == "dynamic":
        return [{}]
    if method == "nncf":
        return [{"preset": "transformer"}]
    return [{"calibration": c, **({"percentile": variant.percentile} if c == "percentile" else {}), "per_channel": pc}
            for pc in variant.per_channel for c in variant.calibration]


def label(method: str, settings: dict | None, runtime: str | None = None, precision: str | None = None) -> str:
    """'dynamic', 'static minmax per-channel', 'nncf transformer', 'fp32 graph at bf16', '... on openvino'."""
    if method in ("fp32", "bf16"):
        text = f"fp32 graph at {precision or method}"
    elif not settings:
        text = method
    elif method == "nncf":
        text = f"nncf {settings['preset']}"
    else:
        cal = settings["calibration"] + (f" {settings['percentile']:g}" if "percentile" in settings else "")
        text = f"{method} {cal} {'per-channel' if settings['per_channel'] else 'per-tensor'}"
    return text + (f" on {runtime}" if runtime else "")


def quantizer(method: str, variant: AutoVariant, int8: dict, calib: dict[str, np.ndarray], settings: dict | None = None):
    """(src, dst, include=None, exclude=None) -> writes the int8 graph of `method` with those nodes."""
    from mmcompress.export import quantize_onnx

    if method == "dynamic":
        cfg = DynamicVariant(name=variant.name, quantize="dynamic")
        return lambda src, dst, include=None, exclude=None: quantize_onnx.quantize_dynamic(
            src, dst, cfg, int8, include=include, exclude=exclude)
    if method == "nncf":
        return lambda src, dst, include=None, exclude=None: quantize_onnx.quantize_nncf(
            src, dst, calib, exclude=exclude)
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


def float_counts(limit: int, n: int) -> list[int]:
    """0, 1, 2, 4, ... up to min(limit, n), the last one included."""
    top = min(limit, n)
    out, k = [0], 1
    while k < top:
        out.append(k)
        k *= 2
    return out + ([top] if top > 0 else [])


class Search:
    """One tower's candidates: every (graph, runtime, precision) tried, judged on the planning rows."""

    def __init__(self, tower: str, src: Path, work: Path, judge: Judge, target: float, threads: int,
                 max_seconds: float, update=None):
        self.tower, self.src, self.work, self.judge, self.target = tower, src, work, judge, target
        self.threads, self.max_seconds, self.update = threads, max_seconds, update
        self.t_end = time.perf_counter() + max_seconds
        self.rows, self.trim = judge.inputs.feeds[tower], judge.inputs.trim[tower]
        self.tried: list[dict] = []
        self.stopped: str | None = None

    def judge_one(self, path: Path, runtime, precision: str, **what) -> dict:
        """Open `path` on `runtime` at `precision`, run the planning rows, judge; -> the candidate (recorded)."""
        from mmcompress.checks.fidelity import cosine_to_teacher
        from mmcompress.runtimes.base import run_batched

        out = run_batched(runtime.open(path, self.threads, precision), self.rows, trim=self.trim)
        cos = cosine_to_teacher(out, self.judge.fp32[self.tower])
        metric, drop = self.judge.drop(self.tower, out)
        ok = cos["min"] >= self.target and self.judge.keeps(drop)
        self.tried.append({"method": what.get("method"), "settings": what.get("settings", {}), "k": what.get("k", 0),
                           "float_nodes": what.get("float_nodes", []), "cosine": cos, "metric": metric, "drop": drop,
                           "passed": ok, "path": path, "runtime": runtime.name, "precision": precision})
        if self.update:
            self.update(len(self.tried), None, f"{label(what.get('method'), what.get('settings'), runtime.name, precision if what.get('method') in ('fp32', 'bf16') else None)}"
                        f", {what.get('k', 0)} float: min cosine {cos['min']:.4f}"
                        + (f", {metric['metric']} {drop:+.2f} pts" if metric else ""))
        return self.tried[-1]

    def out_of_time(self, what: str) -> bool:
        if self.tried and time.perf_counter() > self.t_end:  # the first plan is always tried: there is an answer
            self.stopped = self.stopped or f"time budget of {self.max_seconds:g} s reached during the {what} plans"
        return self.stopped is not None

    def int8(self, variant: AutoVariant, runtime, ranking: list[str], forced: list[str], make) -> None:
        """Per method: every node int8 once per setting; if the best setting misses, the 1, 2, 4, ... most
        harmful nodes kept float until a plan passes, then bisection to the fewest (a prefix of the ranking).
        make(method, settings) -> the quantizer; judged on `runtime`."""

        def attempt(method: str, settings: dict, k: int) -> dict:
            keep = forced + ranking[:k]  # keep_float's nodes in every plan, then the k most harmful
            path = self.work / f"plan-{len(self.tried)}.onnx"
            make(method, settings)(self.src, path, exclude=keep)
            return self.judge_one(path, runtime, "fp32", method=method, settings=settings, k=k, float_nodes=keep)

        for method in variant.methods:
            firsts = []  # every node int8, once per setting of the method: the best setting goes on
            for settings in options(method, variant):
                if self.out_of_time(method):
                    break
                firsts.append(attempt(method, settings, 0))
            if self.stopped or not firsts:
                break
            best = max(firsts, key=lambda p: (p["passed"], p["cosine"]["min"]))
            if best["passed"]:
                continue
            failed = 0  # the longest prefix of the ranking kept float that missed the target
            for k in float_counts(variant.max_float_nodes, len(ranking))[1:]:
                if self.out_of_time(method):
                    break
                if not attempt(method, best["settings"], k)["passed"]:
                    failed = k
                    continue
                lo, hi = failed + 1, k  # bounded search: the fewest float nodes (a prefix) that still pass
                while lo < hi and time.perf_counter() < self.t_end:
                    mid = (lo + hi) // 2
                    if attempt(method, best["settings"], mid)["passed"]:
                        hi = mid
                    else:
                        lo = mid + 1
                break
            if self.stopped:
                break

    def worth_timing(self) -> list[dict]:
        """The plans that pass, every method's all-int8 plan and the closest one (the Pareto plot's points);
        plans that missed on the way are not worth the seconds."""
        closest = self.closest(self.tried)
        return [p for p in self.tried if p["passed"] or p["k"] == 0 or p is closest]

    def closest(self, plans: list[dict]) -> dict:
        return max(plans, key=lambda p: (p["cosine"]["min"] >= self.target, self.judge.keeps(p["drop"]),
                                         p["cosine"]["min"]))

    def cross_check(self, routes: list, first) -> None:
        """The fp32 graph at each precision every planning runtime offers here (fp32 on the first one is the
        timing reference, not a candidate), and the int8 plans worth timing on every runtime but the first."""
        plans = self.worth_timing()
        for r in routes:
            for precision in r.precisions():
                if r is not first or precision != "fp32":
                    self._guarded(r, precision, self.src, method="fp32" if precision == "fp32" else precision)
            if r is not first:
                for p in plans:
                    self._guarded(r, "fp32", p["path"], method=p["method"], settings=p["settings"], k=p["k"],
                                  float_nodes=p["float_nodes"])

    def _guarded(self, runtime, precision: str, path: Path, **what) -> None:
        """judge_one, where a runtime that cannot open or run a graph (an op it lacks) costs that candidate
        only: recorded as not passed with the runtime's words."""
        try:
            self.judge_one(path, runtime, precision, **what)
        except Exception as e:  # the runtime's own error types (OpenVINO's RuntimeError, ...)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            self.tried.append({**{"settings": {}, "k": 0, "float_nodes": []}, **what, "cosine": {"min": -1.0, "mean": -1.0},
                               "metric": None, "drop": None, "passed": False, "path": path, "runtime": runtime.name,
                               "precision": precision, "error": first})

    def time(self, batch: int, calib: dict[str, np.ndarray], first) -> str:
        """Every candidate worth it (and every runtime's fp32 graph) timed interleaved with the fp32 graph on the
        first runtime, at `batch` calibration rows; fills ms / speedup / speedup_ci95. -> why timing stopped.
        Sessions are opened again here rather than kept from judging: judging opens every candidate, and keeping
        them all would hold a copy of the tower's weights per candidate for the whole search."""
        from mmcompress.checks.latency import feeds_at, measure_adaptive, summarize
        from mmcompress.runtimes import get
        from mmcompress.runtimes.base import trim_padding

        worth = {id(p) for p in self.worth_timing()} | {id(p) for p in self.tried if p["runtime"] != first.name}
        timed = [i for i, p in enumerate(self.tried) if id(p) in worth and "error" not in p]
        feeds = feeds_at(calib, batch, None)  # timed on calibration rows at the largest checked batch
        feeds = trim_padding(feeds) if self.trim else feeds
        if self.update:
            self.update(len(self.tried), None, f"timing {len(timed)} plans interleaved with the fp32 graph")
        sessions = {"fp32": first.open(self.src, self.threads, "fp32"),
                    **{f"p{i}": get(self.tried[i]["runtime"]).open(self.tried[i]["path"], self.threads,
                                                                    self.tried[i]["precision"]) for i in timed}}
        times, why = measure_adaptive(sessions, feeds,
                                      max_seconds=min(120.0, max(10.0, self.t_end - time.perf_counter())))
        rows = summarize(times, "fp32")
        self.reference_ms = rows["fp32"]["median_ms"]
        for i, p in enumerate(self.tried):
            r = rows.get(f"p{i}", {})
            p.update(ms=r.get("median_ms"), speedup=r.get("speedup"), speedup_ci95=r.get("speedup_ci95"))
        return why
