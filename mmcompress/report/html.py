"""report.html: the run at a glance for a reviewer (CI artifact): machine, teacher, the artifact table, budgets,
and bar charts of speedup and accuracy change. Self-contained: inline CSS and SVG, no scripts, no downloads."""
from __future__ import annotations

import html

from mmcompress.report.summary import latency_columns, point_label, rows

BAR_W, ROW_H = 320, 18


def _e(x) -> str:
    return html.escape(str(x))


def _bars(title: str, rows: list[tuple[str, float]], unit: str, ref: float | None = None) -> str:
    """Horizontal bars; `ref` draws a dashed line (1.0x for speedups, 0 for deltas)."""
    if not rows:
        return ""
    lo = min([0.0, *(v for _, v in rows)])
    hi = max([ref or 0.0, *(v for _, v in rows)]) or 1.0
    span = hi - lo or 1.0
    x = lambda v: 150 + (v - lo) / span * BAR_W  # label column 150 px
    h = ROW_H * len(rows) + 10
    parts = [f'<svg width="{150 + BAR_W + 80}" height="{h}" role="img" aria-label="{_e(title)}">']
    for i, (label, v) in enumerate(rows):
        y = 5 + i * ROW_H
        x0, x1 = sorted((x(max(lo, 0.0) if lo < 0 else lo), x(v)))
        colour = "#c0392b" if (ref is not None and v < ref) else "#2e86c1"
        parts.append(f'<text x="145" y="{y + 13}" text-anchor="end">{_e(label)}</text>'
                     f'<rect x="{x0:.1f}" y="{y + 2}" width="{max(x1 - x0, 1):.1f}" height="{ROW_H - 5}" fill="{colour}"/>'
                     f'<text x="{x1 + 4:.1f}" y="{y + 13}">{v:.2f}{_e(unit)}</text>')
    if ref is not None:
        parts.append(f'<line x1="{x(ref):.1f}" y1="0" x2="{x(ref):.1f}" y2="{h}" stroke="#555" stroke-dasharray="3,3"/>')
    parts.append("</svg>")
    return f"<h3>{_e(title)}</h3>" + "".join(parts)


def _budget_row(name: str, r: dict) -> str:
    value = "-" if r["value"] is None else f"{r['value'] + 0.0:.4g}"  # + 0.0: no "-0"
    verdict = {True: "pass", False: "fail", None: "not gated"}[r["passed"]]
    cells = [name, r["budget"], r["tower"] or "", r["batch"] or "", r.get("seq_len") or "", value, r["limit"]]
    return "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + f"<td class='{verdict}'>{verdict}</td></tr>"


def _lengths(report: dict) -> str:
    lengths = report["checks"].get("text_lengths") or []
    return "; text at " + ", ".join(f"{x['seq_len']} tokens ({x['from']})" for x in lengths) if lengths else ""


def _int8(report: dict) -> str:
    """One sentence per int8 artifact: the CPU kind its settings are for, and a warning when checked elsewhere."""
    out = []
    for name, e in report["artifacts"].items():
        i = e.get("int8")
        if i:
            out.append(f"{name}: int8 for {i['target']} CPUs ({'7' if i['reduce_range'] else '8'}-bit weights)"
                       + (f" — {i['note']}" if i.get("note") else ""))
    return "<br>".join(_e(x) for x in out)


def _models(report: dict) -> str:
    """Torch-side stages: the student per stage and its training history (loss, eval at intervals)."""
    out = []
    for name, m in (report.get("models") or {}).items():
        s = m.get("student", {})
        towers = "; ".join(f"{t}: " + (f"{d.get('class')} layers {d.get('layers') or 'all'}, width {d.get('width')}"
                                       if d.get("kind") == "hf" else f"python {d.get('entrypoint')}")
                           + f" ({s.get('parameters', {}).get(t, 0) / 1e6:.2f} M of the teacher's "
                             f"{s.get('teacher_parameters', {}).get(t, 0) / 1e6:.2f} M parameters)"
                           for t, d in s.get("towers", {}).items())
        rows = "".join(f"<tr><td>{h['step']}</td><td>{h['loss']:.4g}</td><td style='text-align:left'>{_e(', '.join(f'{k} {v}' for k, v in h.get('eval', {}).items()))}</td></tr>"
                       for h in m.get("history", []))
        out.append(f"<h3>{_e(name)} ({_e(m.get('stage'))})</h3><p>{_e(towers)}. {_e(m.get('seconds'))} s, "
                   f"{_e(m.get('precision'))} on {_e(m.get('device'))}, {_e(m.get('processes'))} process(es).</p>"
                   f"<table><tr><th>step</th><th>loss</th><th>eval</th></tr>{rows}</table>")
    return ("<h2>Models made by stages</h2>" + "".join(out)) if out else ""


def render(report: dict) -> str:
    arts = report["artifacts"]
    m = report["machine"]
    primary = arts["teacher"]["accuracy"].get("primary")
    head, cells = rows(report)
    body = ["<tr>" + "".join(f"<td class='{c if c in ('pass', 'fail') else ''}'>{_e(c)}</td>" for c in r) + "</tr>"
            for r in cells]
    budgets = [_budget_row(n, r) for n, e in arts.items() for r in e["budgets"]]
    charts = []
    for t, k in latency_columns(report):
        speedups = [(n, e["latency"][t][k]["speedup"]) for n, e in arts.items()
                    if "speedup" in e["latency"].get(t, {}).get(k, {})]
        charts.append(_bars(f"{point_label(t, k)}: speedup over the PyTorch teacher", speedups, "x", ref=1.0))
    deltas = [(n, e["accuracy"]["delta"]) for n, e in arts.items() if e["accuracy"].get("delta") is not None]
    charts.append(_bars(f"change in {primary['metric'] if primary else 'accuracy'} vs the teacher (points)", deltas, "", ref=0.0))
    verdict = "all budgets met" if report["passed"] else "budgets missed: " + "; ".join(report["failures"])
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>mmcompress: {_e(report['name'])}</title>
<style>body{{font:14px system-ui,sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse;margin:8px 0 16px}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
.pass{{color:#1e8449}}.fail{{color:#c0392b;font-weight:bold}}svg text{{font:12px system-ui,sans-serif}}</style></head><body>
<h1>{_e(report['name'])}</h1>
<p class="{'pass' if report['passed'] else 'fail'}">{_e(verdict)}</p>
<p>Machine: {_e(m['cpu'])}; instruction sets {_e(', '.join(m['isa']) or 'no AVX2')} ({_e(m['int8_path'])}); {_e(m['threads'])} threads;
{_e(', '.join(f'{k} {v}' for k, v in m['versions'].items()))}.<br>
Teacher: {_e(report['teacher'].get('kind'))} {_e(report['teacher'].get('name') or report['teacher'].get('path') or report['teacher'].get('entrypoint'))}
({_e(report['teacher'].get('task'))}). Data: {_e(report['data']['source'])}, eval {_e(report['data']['splits'].get('eval'))} rows.
Latency: median over {_e(report['checks']['rounds'])} rounds interleaved with the teacher{_e(_lengths(report))}. Run took {_e(report['seconds'])} s; created {_e(report['created'])}.<br>
{_int8(report)}</p>
<table><tr>{''.join(f'<th>{_e(h)}</th>' for h in head)}</tr>{''.join(body)}</table>
{_models(report)}
<h2>Budgets</h2>{'<table><tr><th>artifact</th><th>budget</th><th>tower</th><th>batch</th><th>tokens</th><th>value</th><th>limit</th><th></th></tr>' + ''.join(budgets) + '</table>' if budgets else '<p>none set</p>'}
<h2>Charts</h2>{''.join(charts)}
</body></html>
"""
