"""How often `mmcompress gate` is wrong on this machine: A/A false alarms and A/B detections.

    .venv/bin/python benchmarks/gate_calibration.py --graph runs/clip-shapes/variants/int8-dynamic/image.onnx

A/A: the graph against itself (fresh sessions each trial): every regression declared is a false alarm.
A/B: the graph against a copy slowed by about --slowdown (a chain of input-dependent MatMuls, calibrated here
first over long interleaved runs): every regression declared is a detection. Each trial is one gate decision
(regression.decide: adaptive interleaved rounds, the whole 95% interval beyond 1 / (1 + threshold)).
Writes JSON with the machine fingerprint; docs/ci.md quotes the results.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from mmcompress.bench import feeds_for
    from mmcompress.checks.latency import measure, summarize
    from mmcompress.machine import fingerprint, usable_cores
    from mmcompress.regression import decide, slowed_copy
    from mmcompress.runtimes.onnxruntime import OrtSession

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graph", type=Path, required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--threshold", type=float, default=0.10)
    ap.add_argument("--slowdown", type=float, default=0.15)
    ap.add_argument("--max-seconds", type=float, default=10.0)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    threads = usable_cores()
    tmp = Path(tempfile.mkdtemp())
    feeds = feeds_for(OrtSession(a.graph, threads), a.batch, 16)

    # calibrate the injected slowdown: the chain length whose median ratio is closest to 1 + slowdown
    candidates = {}  # the flattened input's projection dominates the added work: its width sets the slowdown
    for k in (8, 16, 32, 64, 128, 192, 256, 384, 512, 640, 768, 896, 1024, 1280, 1536):
        p = tmp / f"slow{k}.onnx"
        slowed_copy(a.graph, p, matmuls=1, width=k)
        candidates[k] = p
    sessions = {"base": OrtSession(a.graph, threads), **{k: OrtSession(p, threads) for k, p in candidates.items()}}
    rows = summarize(measure(sessions, feeds, rounds=60, warmup=5), "base")
    slow = {k: 1 / rows[k]["speedup"] for k in candidates}
    k = min(slow, key=lambda k: abs(slow[k] - 1 - a.slowdown))
    print(f"injected slowdowns by width (median ratio): {', '.join(f'{k}: {v:.3f}' for k, v in slow.items())}; "
          f"using {k}")

    def trials(cand: Path, label: str) -> list[dict]:
        out = []
        for i in range(a.trials):
            t0 = time.perf_counter()
            pair = {"baseline": OrtSession(a.graph, threads), "candidate": OrtSession(cand, threads)}
            row, why, regressed = decide(pair, feeds, a.threshold, a.max_seconds)
            out.append({"regressed": regressed, "speedup": row["speedup"], "ci95": row["speedup_ci95"],
                        "rounds": row["rounds"], "seconds": round(time.perf_counter() - t0, 2)})
            print(f"{label} {i + 1}/{a.trials}: {row['speedup']:.3f} [{row['speedup_ci95'][0]:.3f}, "
                  f"{row['speedup_ci95'][1]:.3f}] {'REGRESSION' if regressed else 'ok'} ({out[-1]['seconds']} s)")
        return out

    aa = trials(a.graph, "A/A")
    ab = trials(candidates[k], "A/B")
    result = {
        "graph": str(a.graph), "batch": a.batch, "threads": threads, "threshold": a.threshold,
        "max_seconds": a.max_seconds, "machine": fingerprint(),
        "injected": {"width": k, "median_slowdown": slow[k], "all": {str(x): v for x, v in slow.items()}},
        "false_alarm_rate": float(np.mean([t["regressed"] for t in aa])),
        "detection_rate": float(np.mean([t["regressed"] for t in ab])),
        "decision_seconds": {"median": float(np.median([t["seconds"] for t in aa + ab])),
                             "max": float(max(t["seconds"] for t in aa + ab))},
        "aa": aa, "ab": ab,
    }
    print(f"false alarms {result['false_alarm_rate']:.1%} of {a.trials}; detections {result['detection_rate']:.1%} "
          f"of {a.trials} at a {slow[k] - 1:.1%} slowdown; threshold {a.threshold:.0%}")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
