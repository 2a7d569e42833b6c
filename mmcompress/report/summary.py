"""The summary every view shows (terminal table, report.html): one row per artifact, cells as text."""
from __future__ import annotations

from mmcompress.runtimes import DEFAULT


def _latency(entry: dict, tower: str, key: str) -> str:
    lat = entry["latency"].get(tower, {}).get(key)
    if not lat:
        return "-"
    return f"{lat['median_ms']:.2f}" + (f" ({lat['speedup']:.2f}x)" if "speedup" in lat else "")


def point_label(tower: str, key: str) -> str:
    """'image b16'; text points name their length: 'text b16 L24'."""
    batch, _, length = key.partition("@")
    return f"{tower} b{batch}" + (f" L{length}" if length else "")


def latency_columns(report: dict) -> list[tuple[str, str]]:
    """(tower, point key) in the order the teacher was timed."""
    lat = report["artifacts"]["teacher"]["latency"]
    return [(t, k) for t in lat for k in lat[t]]


def rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """-> (headers, rows). Columns: artifact, primary metric, delta, min cosine per tower, latency per tower,
    batch and text length (median ms and speedup over the teacher), size, verdict. A tower the variant does not
    gate shows its cosine in brackets."""
    arts = report["artifacts"]
    towers = list(arts["teacher"]["towers"])
    cols = latency_columns(report)
    primary = arts["teacher"]["accuracy"].get("primary")
    fusion = "fusion" in towers  # answer logits: agreement with the teacher's answers and the KL say more
    headers = ["artifact", primary["metric"].replace("_", " ") if primary else "accuracy", "Δ pts",
               *(["top-1 agree %", "KL max"] if fusion else []),
               *[("logit cos min" if t == "fusion" else f"{t} cos min") for t in towers],
               *[point_label(t, k) for t, k in cols], "MB", "verdict"]
    out = []
    for name, e in arts.items():
        p, delta = e["accuracy"].get("primary"), e["accuracy"].get("delta")
        cos = []
        for t in towers:
            if "fidelity" not in e:
                cos.append("-")
                continue
            v = f"{e['fidelity'][t]['min']:.4f}"
            cos.append(v if e["towers"][t].get("gated", True) else f"({v})")
        label = name if e.get("model", "teacher") == "teacher" else f"{name} ({e['model']})"
        runtime = (e.get("runtime") or {}).get("runtime")
        if name != "teacher" and runtime not in (None, DEFAULT):  # where the row ran, when not ONNX Runtime's CPU
            label += f" [{runtime}]"
        fid = e.get("fidelity", {})
        agree = ([f"{fid['top1_agreement']:.1f}" if "top1_agreement" in fid else "-",
                  f"{fid['kl_to_teacher']['max']:.2g}" if "kl_to_teacher" in fid else "-"] if fusion else [])
        out.append([label, f"{p['value']:.1f}" if p else "-", "-" if delta is None else f"{delta:+.1f}", *agree, *cos,
                    *[_latency(e, t, k) for t, k in cols], f"{e['size_mb']:.1f}", e["verdict"]])
    for name, f in (report.get("failed") or {}).items():  # no figures: its runtime crashed or its stage failed
        out.append([f"{name} [{f['runtime']}]", *["-"] * (len(headers) - 2), "CRASHED" if f["crashed"] else "FAILED"])
    return headers, out
