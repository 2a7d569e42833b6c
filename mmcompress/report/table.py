"""The terminal summary: one row per artifact, the figures a reviewer looks at first."""
from __future__ import annotations

from rich.table import Table


def _lat(entry: dict, tower: str, batch: str) -> str:
    lat = entry["latency"].get(tower, {}).get(batch)
    if not lat:
        return "-"
    s = f"{lat['median_ms']:.2f}"
    return s + (f" ({lat['speedup']:.2f}x)" if "speedup" in lat else "")


def render(report: dict) -> Table:
    arts = report["artifacts"]
    towers = list(arts["teacher"]["towers"])
    batches = [str(b) for b in report["checks"]["batch_sizes"]]
    m = report["machine"]
    title = (f"{report['name']}: {m['cpu']} | {', '.join(m['isa']) or 'no AVX2'} | {m['threads']} threads | "
             f"latency median ms (speedup vs PyTorch teacher)")
    t = Table(title=title, title_justify="left")
    primary = arts["teacher"]["accuracy"].get("primary")
    t.add_column("artifact")
    t.add_column(primary["metric"].replace("_", " ") if primary else "accuracy", justify="right")
    t.add_column("Δ pts", justify="right")
    for tower in towers:
        t.add_column(f"{tower} cos min", justify="right")
    for tower in towers:
        for b in batches:
            t.add_column(f"{tower} b{b}", justify="right")
    t.add_column("MB", justify="right")
    t.add_column("verdict")
    for name, e in arts.items():
        acc = f"{primary_value['value']:.1f}" if (primary_value := e["accuracy"].get("primary")) else "-"
        delta = e["accuracy"].get("delta")
        cos = [f"{e['fidelity'][tw]['min']:.4f}" if "fidelity" in e else "-" for tw in towers]
        lats = [_lat(e, tw, b) for tw in towers for b in batches]
        verdict = {"pass": "[green]pass[/green]", "fail": "[red]FAIL[/red]"}.get(e["verdict"], e["verdict"])
        t.add_row(name, acc, "-" if delta is None else f"{delta:+.1f}", *cos, *lats, f"{e['size_mb']:.1f}", verdict)
    return t
