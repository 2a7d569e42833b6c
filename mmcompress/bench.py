"""`mmcompress bench`: latency and throughput of ONNX artifacts on this machine.

PATH is one .onnx file or a run directory (every tower graph it holds: export-onnx*/, variants/*/). Graphs that
take the same inputs (the image towers, the text towers) are timed together, interleaved round by round, with
rounds added until each speedup's 95% interval is narrow enough (checks.latency.measure_adaptive); the first
graph of a group (the fp32 export when there is one) is the reference. Inputs are synthetic, shaped from the
graph: float pixels at the graph's image size, text of --seq-len tokens.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mmcompress.errors import RecipeError


def graphs(path: Path) -> list[Path]:
    """The tower graphs under a run directory (fp32 exports first), or the one file given."""
    if path.is_file():
        if path.suffix != ".onnx":
            raise RecipeError(f"{path}: not an ONNX file; give a .onnx file or a run directory")
        return [path]
    found = sorted(path.glob("export-onnx*/*.onnx")) + sorted(path.glob("variants/*/*.onnx"))
    if not found:
        raise RecipeError(f"{path}: no ONNX graphs (looked in export-onnx*/ and variants/*/); give a run directory "
                          f"of `mmcompress run` or a .onnx file")
    return found


def feeds_for(session, batch: int, seq_len: int, seed: int = 0, samples: int | None = None) -> dict[str, np.ndarray]:
    """Synthetic inputs for an OrtSession's graph: pixel values (or fixed-window audio features), token ids with a
    full attention mask, or raw audio (batch, samples) with its full mask for graphs that take any clip length
    (wav2vec2): `samples` long, 16000 (1 s at 16 kHz) if not given."""
    rng = np.random.default_rng(seed)
    inputs = session._sess.get_inputs()
    raw_audio = any(i.type == "tensor(float)" and len(i.shape) == 2 and not isinstance(i.shape[1], int) for i in inputs)
    width = (samples or 16000) if raw_audio else seq_len
    out = {}
    for i in inputs:
        shape = [d if isinstance(d, int) else None for d in i.shape]
        if i.type == "tensor(float)" and raw_audio and len(shape) == 2:
            out[i.name] = (0.1 * rng.standard_normal((batch, width))).astype(np.float32)
        elif i.type == "tensor(float)":
            if any(d is None for d in shape[1:]):
                raise RecipeError(f"{session.path}: input {i.name} has a dynamic size {i.shape} other than the batch; "
                                  f"bench needs the image size fixed in the graph")
            out[i.name] = rng.standard_normal([batch, *shape[1:]]).astype(np.float32)
        elif i.name == "attention_mask":
            out[i.name] = np.ones((batch, width), np.int64)
        else:  # token ids: small ids that every vocabulary has
            out[i.name] = rng.integers(4, 16, (batch, seq_len)).astype(np.int64)
    return out


def text_limit(path: Path) -> int | None:
    """The text tower's max_length as the run's export manifest records it (None if there is none)."""
    import json

    root = path if path.is_dir() else path.parent
    for d in (root, root.parent):
        for m in sorted(d.glob("export-onnx*/manifest.json")) + [d / "manifest.json"]:
            if m.is_file():
                for f in json.loads(m.read_text()).get("files", {}).values():
                    n = ((f or {}).get("preprocess") or {}).get("max_length") if isinstance(f, dict) else None
                    if n:
                        return int(n)
    return None


def _signature(session) -> tuple:
    return tuple((i.name, i.type) for i in session._sess.get_inputs())


def run(path: Path, batches: list[int], threads: int, seq_len: int, max_seconds: float) -> dict:
    """-> {'groups': [{'inputs', 'reference', 'points': {batch: {graph: row}}}], 'machine', 'threads'}."""
    from mmcompress.checks.latency import measure_adaptive, summarize
    from mmcompress.machine import fingerprint
    from mmcompress.runtimes.onnxruntime import open_file

    limit = text_limit(path)
    seq_len = min(seq_len, limit) if limit else seq_len  # a graph's positions end at the model's max_length
    root = path if path.is_dir() else path.parent
    sessions = {str(p.relative_to(root)): open_file(p, threads) for p in graphs(path)}
    groups: dict[tuple, dict] = {}
    for name, s in sessions.items():
        groups.setdefault(_signature(s), {})[name] = s
    out = []
    for sig, group in groups.items():
        ref = next(iter(group))
        points = {}
        for b in batches:
            feeds = feeds_for(group[ref], b, seq_len)
            times, why = measure_adaptive(group, feeds, max_seconds=max_seconds)
            rows = summarize(times, ref)
            for name, row in rows.items():
                row["items_per_s"] = b / (row["median_ms"] / 1e3)
            points[str(b)] = {"stopped": why, "rows": rows}
        out.append({"inputs": [n for n, _ in sig], "reference": ref, "points": points,
                    **({"seq_len": seq_len} if any(n == "input_ids" for n, _ in sig) else {})})
    return {"path": str(path), "threads": threads, "machine": fingerprint(), "groups": out}


def run_bundle(path: Path, batches: list[int], threads: int, max_seconds: float) -> dict:
    """A Jetson bundle's built engines (on the board), grouped by tower, on the bundle's eval sample."""
    from mmcompress.checks import bundle
    from mmcompress.checks.latency import feeds_at, measure_adaptive, summarize
    from mmcompress.machine import fingerprint

    m, arrays = bundle.load(path)
    inputs = bundle._inputs(m, arrays)
    sessions = bundle.sessions(path, m, False, threads)
    if not sessions:
        raise RecipeError(f"{path}: no engine is built yet; run ./build.sh in the bundle on the board first")
    out = []
    for tower in sorted({t for _, t in sessions}):
        group = {f"{v}/{t}": s for (v, t), s in sessions.items() if t == tower}
        ref = next(iter(group))
        points = {}
        for b in batches:
            times, why = measure_adaptive(group, feeds_at(inputs.feeds[tower], b, None), max_seconds=max_seconds)
            rows = summarize(times, ref)
            for row in rows.values():
                row["items_per_s"] = b / (row["median_ms"] / 1e3)
            points[str(b)] = {"stopped": why, "rows": rows}
        out.append({"inputs": list(inputs.feeds[tower]), "reference": ref, "points": points})
    return {"path": str(path), "threads": threads, "machine": fingerprint(), "runtime": "tensorrt", "groups": out}


def table(result: dict):
    """The rich table `mmcompress bench` prints."""
    from rich.table import Table

    m = result["machine"]
    t = Table(title=f"{m['cpu']} | {', '.join(m['isa']) or 'no AVX2'} | {result['threads']} threads",
              title_justify="left")
    for h in ("graph", "inputs", "batch", "median ms", "p90 ms", "items/s", "speedup (95% interval)", "rounds"):
        t.add_column(h, justify="left" if h in ("graph", "inputs") else "right", no_wrap=h == "graph")
    for g in result["groups"]:
        inputs = ", ".join(g["inputs"]) + (f" @{g['seq_len']}" if "seq_len" in g else "")
        for b, point in g["points"].items():
            for name, r in point["rows"].items():
                ci = r.get("speedup_ci95")
                t.add_row(name, inputs, b, f"{r['median_ms']:.2f}", f"{r['p90_ms']:.2f}", f"{r['items_per_s']:.0f}",
                          f"{r['speedup']:.2f}x [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "reference", str(r["rounds"]))
    return t
