"""`mmcompress gate`: a finished run against a baseline (an earlier accepted run), on this machine.

Accuracy, fidelity and size are compared from the two reports. Latency is measured again, here and now: each
candidate graph interleaved with the baseline's graph of the same artifact and tower (checks.latency.
measure_adaptive), and a regression is declared only when the whole 95% interval of baseline/candidate lies
below 1 / (1 + threshold): slower beyond the threshold with confidence, not by one noisy median.

A baseline carries the fingerprint of the machine it was accepted on (CPU model, int8 kind, threads, ONNX
Runtime version). Latency against a baseline of another fingerprint is refused unless forced; forced, only the
speedups over each run's own teacher are compared (both measured in their own run), with no interval.
A baseline is a folder: report.json plus the graphs it names (`mmcompress gate RUN --update-baseline DIR`).

Engine rows (runtimes that build TensorRT engines) carry the TensorRT version their engines were built with in
the fingerprint: accuracy and speed move with the TensorRT version alone, so an engine row is compared only with
a baseline of the same TensorRT (refused otherwise unless forced), and a team keeps one baseline per (GPU or
board, TensorRT) pair (docs/ci.md).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mmcompress import runtimes
from mmcompress.errors import RecipeError

ACCURACY_POINTS = 0.5   # a drop in the primary metric beyond this many points is a regression
COSINE_DROP = 0.002     # a drop in a gated tower's min cosine beyond this is a regression
SIZE_GROWTH = 0.05      # growth in size beyond 5% is a regression


@dataclass
class Check:
    name: str            # 'int8-dynamic.latency.image.b16'
    passed: bool
    message: str
    value: float | None = None
    baseline: float | None = None


def read(path: Path) -> tuple[Path, dict]:
    """A run directory, a baseline folder or a report.json -> (its folder, the report)."""
    path = Path(path)
    file = path / "report.json" if path.is_dir() else path
    try:
        report = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise RecipeError(f"{file}: cannot read a report ({e}); give a run directory, a baseline folder or a "
                          f"report.json") from None
    if not isinstance(report, dict) or not {"machine", "artifacts"} <= set(report):
        raise RecipeError(f"{file}: not a report of `mmcompress run` (no 'machine' and 'artifacts'); give a run "
                          f"directory, a baseline folder or a report.json")
    return file.parent, report


def engine_versions(report: dict) -> dict[str, str]:
    """artifact name -> the TensorRT version its engines were built with, for the rows of runtimes that build
    engines (the version the run's TensorRT runtime recorded; each engine's manifest says the same)."""
    out = {}
    for name, entry in report["artifacts"].items():
        rt = entry.get("runtime") or {}
        known = rt.get("runtime") in runtimes.names()
        if rt.get("tensorrt") and (runtimes.get(rt["runtime"]).engines if known else True):
            out[name] = str(rt["tensorrt"])
    return out


def fingerprint(report: dict) -> dict:
    """The machine a report was made on; `tensorrt`: its engine rows' TensorRT version(s), None without any."""
    m = report["machine"]
    trt = sorted(set(engine_versions(report).values()))
    return {"cpu": m.get("cpu"), "int8_kind": m.get("int8_kind"), "threads": m.get("threads"),
            "onnxruntime": m.get("versions", {}).get("onnxruntime"), "tensorrt": ",".join(trt) or None}


def here(threads: int | None = None) -> dict:
    """This machine's fingerprint, in the form of `fingerprint` (threads: the cores this process may use)."""
    from mmcompress.machine import fingerprint as machine_fp
    from mmcompress.machine import usable_cores

    fp = machine_fp()
    return {"cpu": fp["cpu"], "int8_kind": fp["int8_kind"], "threads": threads or usable_cores(),
            "onnxruntime": fp["versions"].get("onnxruntime")}


def key(fp: dict) -> str:
    """The fingerprint as one cache-key-safe word, e.g. 'amd-epyc-avx2-2t-ort1.32.0' (CI caches a baseline
    per runner kind under it)."""
    import re

    cpu = re.sub(r"[^a-z0-9]+", "-", str(fp.get("cpu") or "unknown-cpu").lower()).strip("-")
    trt = f"-trt{re.sub(r'[^0-9.]+', '-', fp['tensorrt'])}" if fp.get("tensorrt") else ""
    return f"{cpu}-{fp.get('int8_kind')}-{fp.get('threads')}t-ort{fp.get('onnxruntime')}{trt}"


def update_baseline(run_dir: Path, dest: Path) -> Path:
    """Copy the run's report.json and every graph it names into dest, atomically (temp folder, then rename)."""
    src, report = read(run_dir)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for entry in report["artifacts"].values():
            for t in entry["towers"].values():
                if t.get("path"):
                    (tmp / t["path"]).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src / t["path"], tmp / t["path"])
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
        old = dest.with_name(f".{dest.name}.old")
        if dest.exists():
            dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _quality(name: str, cand: dict, base: dict) -> list[Check]:
    out = []
    cp, bp = cand["accuracy"].get("primary"), base["accuracy"].get("primary")
    if cp and bp:
        drop = bp["value"] - cp["value"]
        out.append(Check(f"{name}.accuracy", drop <= ACCURACY_POINTS,
                         f"{cp['metric']} {cp['value']:.2f} vs baseline {bp['value']:.2f} (drop {drop:+.2f} pts, "
                         f"allowed {ACCURACY_POINTS})", cp["value"], bp["value"]))
    for t, tower in cand["towers"].items():
        if not tower.get("gated", True) or t not in cand.get("fidelity", {}) or t not in base.get("fidelity", {}):
            continue
        c, b = cand["fidelity"][t]["min"], base["fidelity"][t]["min"]
        out.append(Check(f"{name}.cosine.{t}", b - c <= COSINE_DROP,
                         f"min cosine {c:.4f} vs baseline {b:.4f} (allowed drop {COSINE_DROP})", c, b))
    c, b = cand["size_mb"], base["size_mb"]
    out.append(Check(f"{name}.size", c <= b * (1 + SIZE_GROWTH), f"{c:.2f} MB vs baseline {b:.2f} MB", c, b))
    return out


def decide(sessions: dict, feeds: dict, threshold: float, max_seconds: float) -> tuple[dict, str, bool]:
    """sessions {'baseline', 'candidate'} timed interleaved (adaptive rounds) -> (the candidate's summary row with
    speedup = baseline/candidate and its 95% interval, why the rounds stopped, regressed: the whole interval
    below 1 / (1 + threshold))."""
    from mmcompress.checks.latency import measure_adaptive, summarize

    times, why = measure_adaptive(sessions, feeds, max_seconds=max_seconds)
    row = summarize(times, "baseline")["candidate"]
    return row, why, row["speedup_ci95"][1] < 1 / (1 + threshold)


def slowed_copy(src: Path, dst: Path, matmuls: int, width: int = 256) -> None:
    """For calibrating the gate: the graph at src with the same outputs plus input-dependent work (a chain of
    `matmuls` MatMuls of width x width, multiplied by 0 and added to the output; ORT cannot fold it away)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(src)
    g = m.graph
    x, y = g.input[0].name, g.output[0].name
    rng = np.random.default_rng(0)
    flat = int(np.prod([d.dim_value for d in g.input[0].type.tensor_type.shape.dim[1:]]))
    g.initializer.extend([numpy_helper.from_array(rng.standard_normal((flat, width)).astype(np.float32) * 0.01, "slow_w0"),
                          numpy_helper.from_array(rng.standard_normal((width, width)).astype(np.float32) * 0.01, "slow_w"),
                          numpy_helper.from_array(np.array([1], np.int64), "slow_axes"),
                          numpy_helper.from_array(np.array(0.0, np.float32), "slow_zero")])
    nodes = [helper.make_node("Flatten", [x], ["slow_f"], axis=1),
             helper.make_node("MatMul", ["slow_f", "slow_w0"], ["slow_0"])]
    nodes += [helper.make_node("MatMul", [f"slow_{i}", "slow_w"], [f"slow_{i + 1}"]) for i in range(matmuls)]
    nodes += [helper.make_node("ReduceSum", [f"slow_{matmuls}", "slow_axes"], ["slow_s"], keepdims=1),
              helper.make_node("Mul", ["slow_s", "slow_zero"], ["slow_z"])]
    for node in g.node:  # the old output now feeds the Add that makes the new one
        node.output[:] = ["slow_out" if o == y else o for o in node.output]
    nodes.append(helper.make_node("Add", ["slow_out", "slow_z"], [y]))
    g.node.extend(nodes)
    onnx.save(m, dst)


def _latency_here(name: str, cand: dict, base: dict, cand_dir: Path, base_dir: Path, threshold: float,
                  threads: int, max_seconds: float, seq_len: int, rate: int = 16000) -> list[Check]:
    """rate: the audio's sample rate, for points timed at a clip length ('16@0.8s')."""
    from mmcompress.bench import feeds_for
    from mmcompress.runtimes.onnxruntime import open_file

    out = []
    for t, tower in cand["towers"].items():
        bt = base["towers"].get(t, {})
        if not tower.get("gated", True) or not tower.get("path") or not bt.get("path"):
            continue
        sessions = {"baseline": open_file(base_dir / bt["path"], threads), "candidate": open_file(cand_dir / tower["path"], threads)}
        for key in cand["latency"].get(t, {}):
            batch, _, at = key.partition("@")
            batch = int(batch)
            samples = round(float(at[:-1]) * rate) if at.endswith("s") else None  # audio timed at a clip length
            feeds = feeds_for(sessions["baseline"], batch, seq_len, samples=samples)
            row, why, regressed = decide(sessions, feeds, threshold, max_seconds)
            lo, hi = row["speedup_ci95"]
            limit = 1 / (1 + threshold)
            out.append(Check(f"{name}.latency.{t}.b{batch}", not regressed,
                             f"{row['median_ms']:.2f} ms, {row['speedup']:.3f}x the baseline [95%: {lo:.3f}, {hi:.3f}]; "
                             f"a regression needs the whole interval below {limit:.3f} ({why})",
                             row["speedup"], 1.0))
    return out


def _latency_ratios(name: str, cand: dict, base: dict, threshold: float) -> list[Check]:
    out = []
    for t, points in cand["latency"].items():
        for key, row in points.items():
            b = base["latency"].get(t, {}).get(key, {})
            if "speedup" not in row or "speedup" not in b or not cand["towers"].get(t, {}).get("gated", True):
                continue
            ok = row["speedup"] >= b["speedup"] / (1 + threshold)
            out.append(Check(f"{name}.latency.{t}.{key}", ok,
                             f"{row['speedup']:.2f}x over its teacher vs baseline {b['speedup']:.2f}x over its own "
                             f"(forced across machines: ratios only)", row["speedup"], b["speedup"]))
    return out


def compare(run_dir: Path, baseline: Path, *, threshold: float = 0.10, force: bool = False, threads: int | None = None,
            max_seconds: float = 20.0) -> dict:
    """-> {'checks': [Check...], 'passed', 'fingerprints', 'mode'}; raises RecipeError on a fingerprint mismatch
    unless force."""
    from mmcompress.machine import usable_cores

    cand_dir, cand = read(run_dir)
    base_dir, base = read(baseline)
    fp_c, fp_b = fingerprint(cand), fingerprint(base)
    fp_here = here(threads or fp_c["threads"])
    differ = sorted(k for k in fp_here if fp_b.get(k) != fp_here[k])  # engine rows: by TensorRT, below
    trt_c, trt_b = engine_versions(cand), engine_versions(base)
    trt_differ = {n: (trt_b[n], trt_c[n]) for n in trt_b if n in trt_c and trt_b[n] != trt_c[n]}
    if trt_differ and not force:
        raise RecipeError(f"{baseline}: engine rows built with another TensorRT ("
                          + ", ".join(f"{n}: baseline {b}, this run {c}" for n, (b, c) in trt_differ.items())
                          + "); accuracy and speed move with the TensorRT version alone. Keep one baseline per "
                            "(GPU or board, TensorRT): make one for this TensorRT (mmcompress gate RUN "
                            "--update-baseline DIR), or pass --force to compare anyway")
    if differ and not force:
        raise RecipeError(f"{baseline}: the baseline was accepted on another machine ({', '.join(f'{k} {fp_b[k]} here {fp_here[k]}' for k in differ)}); "
                          f"latency is not comparable. Make a baseline on this machine kind "
                          f"(mmcompress gate RUN --update-baseline DIR), or pass --force to compare only the "
                          f"speedups over each run's own teacher")
    mode = "ratios to each run's teacher" if differ else "measured here, interleaved"
    if trt_differ:
        mode += f"; forced across TensorRT versions for {', '.join(trt_differ)}"
    checks: list[Check] = []
    seq = (cand["checks"].get("text_lengths") or [{"seq_len": 16}])[-1]["seq_len"]
    rate = (((cand.get("data") or {}).get("audio") or {}).get("preprocess") or {}).get("sampling_rate") or 16000
    for name, b in base["artifacts"].items():
        if name == "teacher":
            continue
        c = cand["artifacts"].get(name)
        if c is None:
            checks.append(Check(f"{name}.present", False, "in the baseline but not in this run"))
            continue
        checks += _quality(name, c, b)
        # only ONNX Runtime's CPU graphs are re-timed here; other runtimes (GPU, PyTorch, Q/DQ as written) are
        # compared by their speedup over their own run's teacher
        cpu_graph = (c.get("runtime") or {}).get("runtime", runtimes.DEFAULT) == runtimes.DEFAULT and \
            not (c.get("int8") or {}).get("target") == "tensorrt"
        if differ or not cpu_graph:
            checks += _latency_ratios(name, c, b, threshold)
        else:
            checks += _latency_here(name, c, b, cand_dir, base_dir, threshold, threads or usable_cores(),
                                    max_seconds, seq, rate)
    return {"checks": checks, "passed": all(ch.passed for ch in checks), "mode": mode,
            "fingerprints": {"run": fp_c, "baseline": fp_b, "here": fp_here}, "threshold": threshold}


def junit(result: dict) -> str:
    """JUnit XML: one test case per check, failures with their message."""
    from xml.sax.saxutils import quoteattr

    checks = result["checks"]
    cases = []
    for ch in checks:
        cls, _, case = ch.name.partition(".")
        body = "" if ch.passed else f"<failure message={quoteattr(ch.message)}/>"
        cases.append(f"  <testcase classname={quoteattr('mmcompress.' + cls)} name={quoteattr(case)}>"
                     f"<system-out>{ch.message.replace('&', '&amp;').replace('<', '&lt;')}</system-out>{body}</testcase>")
    failures = sum(not ch.passed for ch in checks)
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<testsuite name="mmcompress gate" tests="{len(checks)}" '
            f'failures="{failures}" errors="0">\n' + "\n".join(cases) + "\n</testsuite>\n")


def markdown(result: dict) -> str:
    """A pull-request comment: the verdict, then one row per check."""
    failed = [c for c in result["checks"] if not c.passed]
    head = (f"**mmcompress gate: {'no regression' if not failed else f'{len(failed)} regression(s)'}** "
            f"(latency {result['mode']}, threshold {result['threshold']:.0%})\n\n")
    rows = "\n".join(f"| {'✅' if c.passed else '❌'} | `{c.name}` | {c.message} |" for c in result["checks"])
    return head + "| | check | result |\n|---|---|---|\n" + rows + "\n"
