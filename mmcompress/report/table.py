"""The terminal summary: one row per artifact, the figures a reviewer looks at first."""
from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from mmcompress.report.summary import rows

VERDICT_STYLE = {"pass": "[green]pass[/green]", "fail": "[red]FAIL[/red]", "not gated": "[yellow]not gated[/yellow]",
                 "CRASHED": "[red]CRASHED[/red]", "FAILED": "[red]FAILED[/red]"}


def render(report: dict) -> Table:
    m = report["machine"]
    title = (f"{report['name']}: {m['cpu']} | {', '.join(m['isa']) or 'no AVX2'} | {m['threads']} threads | "
             f"latency median ms (speedup vs PyTorch teacher)")
    gpu = (m.get("gpu") or {}).get("name")
    if gpu and any((e.get("runtime") or {}).get("device") not in (None, "cpu")  # a row measured on the GPU
                   for e in report["artifacts"].values()):
        title = title.replace(" | latency", f" | GPU {gpu} | latency")
    lengths = report["checks"].get("text_lengths") or []
    notes = [f"text L{x['seq_len']}: {x['from']}" for x in lengths]
    notes += [f"audio {x['seconds']:g} s: {x['from']}" for x in report["checks"].get("audio_seconds") or []]
    notes += [f"{n}: {e['int8']['note']}" for n, e in report["artifacts"].items() if e.get("int8", {}).get("note")]
    if any(not t.get("gated", True) for e in report["artifacts"].values() for t in e["towers"].values()):
        notes.append("(cos) in brackets: a tower the variant leaves as the fp32 export, not gated by it")
    notes += [f"{c['after']} vs {c['before']} ({c['tower']} b{c['point']}, pruned vs unpruned): {c['speedup']:.2f}x "
              f"[{c['speedup_ci95'][0]:.2f}, {c['speedup_ci95'][1]:.2f}]"
              for m in (report.get("models") or {}).values() for c in m.get("pruning", {}).get("latency", [])]
    notes += [f"{n}: {f['error']}" for n, f in (report.get("failed") or {}).items()]
    notes += [f"{n} {r['tower']} b{r['batch']}: {r['budget']} {r['value']:.3g} undecided (95% interval "
              f"{r['ci95'][0]:.3g}-{r['ci95'][1]:.3g} straddles {r['limit']:g}; passes)"
              for n, e in report["artifacts"].items() for r in e.get("budgets", []) if r.get("undecided")]
    t = Table(title=escape(title), title_justify="left", caption=escape("; ".join(notes)), caption_justify="left")
    headers, body = rows(report)
    for i, h in enumerate(headers):
        t.add_column(h, justify="left" if i in (0, len(headers) - 1) else "right", no_wrap=i == 0)
    for cells in body:
        t.add_row(*map(escape, cells[:-1]), VERDICT_STYLE.get(cells[-1], escape(cells[-1])))  # '[torch-cpu]' is text
    return t
