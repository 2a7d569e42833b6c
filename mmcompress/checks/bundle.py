"""`mmcompress check BUNDLE` and `mmcompress bench BUNDLE`: a Jetson bundle's engines (export/jetson.py) checked
on the board that built them, against the teacher's outputs shipped in the bundle.

Per engine: the task metric on the eval sample (towers the variant does not build take the teacher's outputs),
cosine to the teacher per tower, latency (interleaved rounds per tower), and with a DLA core the share of layers
that fell back to the GPU, read from the engine's build log. `--onnxruntime` runs the bundle's ONNX graphs on
ONNX Runtime's CPU instead (int8 Q/DQ as written): a check of the bundle itself before it goes to a board.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from mmcompress.errors import BackendMissing, RecipeError

_VERSION = re.compile(r"\[TensorRT v(\d+)\]")
_DEVICE = re.compile(r"Selected Device:\s*(.+?)\s*$", re.M)
_CC = re.compile(r"Compute Capability:\s*(\d+\.\d+)")


def decode_version(code: int) -> str:
    """trtexec's version tag: 8502 -> 8.5.2 (MAJOR*1000 + MINOR*100 + PATCH before 10), 100300 -> 10.3.0
    (MAJOR*10000 + MINOR*100 + PATCH from 10)."""
    if code >= 100000:
        return f"{code // 10000}.{(code // 100) % 100}.{code % 100}"
    return f"{code // 1000}.{(code // 100) % 10}.{code % 100}"


def parse_build_log(text: str) -> dict:
    """What a trtexec build log (--verbose) says: TensorRT version, device, compute capability, and the layers
    TensorRT placed on the DLA and on the GPU (its '---------- Layers Running on DLA/GPU ----------' lists)."""
    out: dict = {}
    if m := _VERSION.search(text):
        out["tensorrt"] = decode_version(int(m.group(1)))
    if m := _DEVICE.search(text):
        out["gpu"] = m.group(1)
    if m := _CC.search(text):
        out["compute_capability"] = m.group(1)
    section, dla, gpu = None, 0, 0
    for line in text.splitlines():
        if "Layers Running on DLA" in line:
            section = "dla"
        elif "Layers Running on GPU" in line:
            section = "gpu"
        elif section == "dla" and "[DlaLayer]" in line:
            dla += 1
        elif section == "gpu" and "[GpuLayer]" in line:
            gpu += 1
        elif section and "---------- " in line:
            section = None
    if dla or gpu:
        out["layers"] = {"dla": dla, "gpu": gpu, "gpu_share": round(gpu / (dla + gpu), 4)}
    return out


def load(folder: Path) -> tuple[dict, dict]:
    """-> (bundle.json, eval.npz arrays)."""
    from mmcompress.artifact import load_npz

    path = folder / "bundle.json"
    if not path.is_file():
        raise RecipeError(f"{folder}: not a bundle (no bundle.json); give the folder `mmcompress run` wrote under "
                          f"RUN_DIR/bundles/")
    try:
        m, arrays = json.loads(path.read_text()), load_npz(folder / "eval.npz")
    except (OSError, ValueError, KeyError) as e:  # truncated or hand-edited: the user's file, exit 2
        raise RecipeError(f"{folder}: bundle.json or eval.npz cannot be read ({type(e).__name__}: {e}); copy the "
                          f"bundle again from RUN_DIR/bundles/ (or rerun the `mmcompress run` that wrote it)") from None
    if not isinstance(m, dict) or "engines" not in m or "eval" not in m:
        raise RecipeError(f"{path}: not a bundle manifest (no 'engines' and 'eval'); give the folder `mmcompress "
                          f"run` wrote under RUN_DIR/bundles/")
    return m, arrays


def _inputs(m: dict, arrays: dict):
    from mmcompress.checks.evaluate import EvalInputs

    e = m["eval"]
    feeds: dict = {}
    for key, v in arrays.items():
        if key.startswith("feed/"):
            _, tower, name = key.split("/", 2)
            feeds.setdefault(tower, {})[name] = v
    return EvalInputs(feeds=feeds, calib={}, blocks={k: tuple(v) for k, v in e["blocks"].items()},
                      labels=arrays.get("labels"), caption_of_image=arrays.get("caption_of_image"),
                      n_classes=e["n_classes"], n_templates=e["n_templates"], key=e["key"], trim=e["trim"])


def engine_manifest(folder: Path, entry: dict) -> dict:
    """The engine's manifest, written beside it from its build log on first use (build.sh runs trtexec only)."""
    engine = folder / entry["engine"]
    path = engine.with_suffix(".json")
    if path.is_file():
        return json.loads(path.read_text())
    log = folder / entry["log"]
    info = parse_build_log(log.read_text(errors="replace")) if log.is_file() else {}
    m = {"format": "tensorrt-engine", "tensorrt": info.get("tensorrt"), "gpu": info.get("gpu"),
         "compute_capability": info.get("compute_capability"), "precision": entry["precision"],
         "profiles": [entry["profile"]], "onnx": entry["onnx"], "onnx_sha256": entry["onnx_sha256"],
         "from_log": entry["log"], **({"layers": info["layers"]} if "layers" in info else {})}
    path.write_text(json.dumps(m, indent=2))
    return m


def sessions(folder: Path, m: dict, use_onnxruntime: bool, threads: int) -> dict[tuple[str, str], object]:
    """(variant, tower) -> Session for every engine built (or every graph, with use_onnxruntime)."""
    out = {}
    for e in m["engines"]:
        key = (e["variant"], e["tower"])
        if use_onnxruntime:
            from mmcompress.runtimes.onnxruntime import open_file

            out[key] = open_file(folder / e["onnx"], threads, f"{e['variant']}/{e['tower']}",
                                  as_written=e["precision"] == "int8-qdq")
            continue
        if not (folder / e["engine"]).is_file():
            continue
        import importlib.util

        if importlib.util.find_spec("tensorrt") is None:
            raise BackendMissing(f"{folder}: checking engines needs TensorRT's Python bindings (JetPack's "
                                 f"python3-libnvinfer, or pip install tensorrt) and a CUDA build of PyTorch; run "
                                 f"this on the board, or add --onnxruntime to check the bundle's graphs on this CPU")
        from mmcompress.runtimes.tensorrt import TrtSession

        engine_manifest(folder, e)
        out[key] = TrtSession(folder / e["engine"], f"{e['variant']}/{e['tower']}",
                              rebuild=f"cd {folder} && ./build.sh")
    return out


def check(folder: Path, use_onnxruntime: bool = False, threads: int = 1, rounds: int = 20) -> dict:
    from mmcompress.checks import fidelity, tasks
    from mmcompress.checks.latency import feeds_at, measure, summarize
    from mmcompress.runtimes.base import run_batched

    m, arrays = load(folder)
    inputs = _inputs(m, arrays)
    teacher = {t: arrays[f"teacher/{t}"] for t in inputs.feeds}
    args = (m["task"], m.get("ensemble", "mean"), m.get("recall_k", [1, 5]), m.get("knn_k", 5))
    t_acc, t_pred = tasks.metrics(m["task"], teacher, inputs, *args[1:])
    sess = sessions(folder, m, use_onnxruntime, threads)
    missing = [f"{e['variant']}/{e['tower']}" for e in m["engines"] if (e["variant"], e["tower"]) not in sess]
    if not sess:
        raise RecipeError(f"{folder}: no engine is built yet; run ./build.sh in the bundle on the board first")
    by_variant: dict[str, dict] = {}
    for (variant, tower), s in sess.items():
        by_variant.setdefault(variant, {})[tower] = s
    budgets = m.get("budgets") or {}
    rows, passed = {}, True
    for variant, towers in by_variant.items():
        emb = dict(teacher)
        for tower, s in towers.items():
            emb[tower] = run_batched(s, inputs.feeds[tower], trim=inputs.trim.get(tower, False))
        acc, pred = tasks.metrics(m["task"], emb, inputs, *args[1:])
        delta = acc["primary"]["value"] - t_acc["primary"]["value"] if acc["primary"] and t_acc["primary"] else None
        fid = {t: fidelity.cosine_to_teacher(emb[t], teacher[t]) for t in towers}
        row = {"accuracy": acc, "delta": delta, "fidelity": fid, "towers": sorted(towers)}
        if pred is not None and t_pred is not None:
            row["top1_agreement"] = fidelity.top1_agreement(pred, t_pred)
        fails = []
        if budgets.get("max_accuracy_drop") is not None and delta is not None and -delta > budgets["max_accuracy_drop"]:
            fails.append(f"accuracy drop {-delta:.2f} > {budgets['max_accuracy_drop']}")
        for t, f in fid.items():
            if budgets.get("min_cosine") is not None and f["min"] < budgets["min_cosine"]:
                fails.append(f"{t} min cosine {f['min']:.4f} < {budgets['min_cosine']}")
        row["failures"] = fails
        passed &= not fails
        rows[variant] = row
    # latency: per tower, every engine of it interleaved, at batch 1 and the profile's opt batch
    latency: dict = {}
    for tower in sorted({t for _, t in sess}):
        group = {f"{v}/{t}": s for (v, t), s in sess.items() if t == tower}
        opt = next(e["profile"] for e in m["engines"] if e["tower"] == tower)
        opt_batch = next(iter(opt.values()))["opt"][0]
        for b in sorted({1, opt_batch}):
            feeds = feeds_at(inputs.feeds[tower], b, None)
            times = measure(group, feeds, rounds=rounds, warmup=3)
            latency.setdefault(tower, {})[str(b)] = summarize(times, next(iter(group)))
    layers = {}
    if not use_onnxruntime:
        for e in m["engines"]:
            if (e["variant"], e["tower"]) in sess:
                info = engine_manifest(folder, e)
                if "layers" in info:
                    layers[f"{e['variant']}/{e['tower']}"] = info["layers"]
    result = {"bundle": str(folder), "runtime": "onnxruntime-cpu" if use_onnxruntime else "tensorrt",
              "teacher": t_acc, "variants": rows, "latency": latency, "dla_fallback": layers,
              "not_built": missing, "passed": passed}
    (folder / ("check-onnxruntime.json" if use_onnxruntime else "check.json")).write_text(json.dumps(result, indent=2))
    return result


def table(result: dict):
    from rich.table import Table

    t = Table(title=f"{result['bundle']} on {result['runtime']}", title_justify="left",
              caption=("not built: " + ", ".join(result["not_built"])) if result["not_built"] else None)
    for h in ("variant", "towers", "accuracy", "Δ pts", "cos min", "DLA→GPU", "verdict"):
        t.add_column(h)
    for name, r in result["variants"].items():
        p = r["accuracy"]["primary"]
        cos = ", ".join(f"{k} {v['min']:.4f}" for k, v in r["fidelity"].items())
        dla = ", ".join(f"{k}: {v['gpu_share']:.0%}" for k, v in result["dla_fallback"].items() if k.startswith(f"{name}/"))
        t.add_row(name, ", ".join(r["towers"]), f"{p['value']:.1f}" if p else "-",
                  "-" if r["delta"] is None else f"{r['delta']:+.1f}", cos, dla or "-",
                  "pass" if not r["failures"] else "FAIL: " + "; ".join(r["failures"]))
    return t
