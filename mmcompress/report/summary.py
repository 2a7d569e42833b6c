"""The summary every view shows (terminal table, report.html): one row per artifact, cells as text."""
from __future__ import annotations


def _latency(entry: dict, tower: str, batch: str) -> str:
    lat = entry["latency"].get(tower, {}).get(batch)
    if not lat:
        return "-"
    return f"{lat['median_ms']:.2f}" + (f" ({lat['speedup']:.2f}x)" if "speedup" in lat else "")


def rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """-> (headers, rows). Columns: artifact, primary metric, delta, min cosine per tower, latency per tower and
    batch (median ms and speedup over the teacher), size, verdict."""
    arts = report["artifacts"]
    towers = list(arts["teacher"]["towers"])
    batches = [str(b) for b in report["checks"]["batch_sizes"]]
    primary = arts["teacher"]["accuracy"].get("primary")
    headers = ["artifact", primary["metric"].replace("_", " ") if primary else "accuracy", "Δ pts",
               *[f"{t} cos min" for t in towers], *[f"{t} b{b}" for t in towers for b in batches], "MB", "verdict"]
    out = []
    for name, e in arts.items():
        p, delta = e["accuracy"].get("primary"), e["accuracy"].get("delta")
        out.append([name, f"{p['value']:.1f}" if p else "-", "-" if delta is None else f"{delta:+.1f}",
                    *[f"{e['fidelity'][t]['min']:.4f}" if "fidelity" in e else "-" for t in towers],
                    *[_latency(e, t, b) for t in towers for b in batches],
                    f"{e['size_mb']:.1f}", e["verdict"]])
    return headers, out
