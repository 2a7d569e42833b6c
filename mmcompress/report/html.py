"""report.html: the run at a glance for a reviewer (CI artifact): machine, teacher, the artifact table, budgets,
bar charts of speedup and accuracy change, latency distributions per timed point and accuracy against latency. Self-contained: inline CSS and SVG, no scripts, no downloads."""
from __future__ import annotations

import html

from mmcompress.report.summary import latency_columns, point_label, rows

BAR_W, ROW_H = 320, 18
PLOT_W, PLOT_H, LABEL_W = 420, 220, 150
COLOURS = ("#2e86c1", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085", "#d35400", "#7f8c8d")


def _colour(names: list[str], name: str) -> str:
    """One colour per artifact across every plot; the teacher dark grey."""
    return "#333" if name == "teacher" else COLOURS[[n for n in names if n != "teacher"].index(name) % len(COLOURS)]


def _e(x) -> str:
    return html.escape(str(x))


def _bars(title: str, rows: list[tuple[str, float]], unit: str, ref: float | None = None, fmt: str = ".2f",
          label_w: int = 150) -> str:
    """Horizontal bars; `ref` draws a dashed line (1.0x for speedups, 0 for deltas)."""
    if not rows:
        return ""
    lo = min([0.0, *(v for _, v in rows)])
    hi = max([ref or 0.0, *(v for _, v in rows)]) or 1.0
    span = hi - lo or 1.0
    x = lambda v: label_w + (v - lo) / span * BAR_W  # label column
    h = ROW_H * len(rows) + 10
    parts = [f'<svg width="{label_w + BAR_W + 80}" height="{h}" role="img" aria-label="{_e(title)}">']
    for i, (label, v) in enumerate(rows):
        y = 5 + i * ROW_H
        x0, x1 = sorted((x(max(lo, 0.0) if lo < 0 else lo), x(v)))
        colour = "#a93226" if (ref is not None and v < ref) else "#5499c7"  # not among COLOURS (screenshot check)
        parts.append(f'<text x="{label_w - 5}" y="{y + 13}" text-anchor="end">{_e(label)}</text>'
                     f'<rect x="{x0:.1f}" y="{y + 2}" width="{max(x1 - x0, 1):.1f}" height="{ROW_H - 5}" fill="{colour}"/>'
                     f'<text x="{x1 + 4:.1f}" y="{y + 13}">{v:{fmt}}{_e(unit)}</text>')
    if ref is not None:
        parts.append(f'<line x1="{x(ref):.1f}" y1="0" x2="{x(ref):.1f}" y2="{h}" stroke="#555" stroke-dasharray="3,3"/>')
    parts.append("</svg>")
    return f"<h3>{_e(title)}</h3>" + "".join(parts)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values spanning [lo, hi]."""
    import math

    step = (hi - lo) / n or 1.0
    mag = 10 ** math.floor(math.log10(step))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= step), default=10 * mag)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"


def _distribution(title: str, rows: list[tuple[str, list[float]]], names: list[str]) -> str:
    """One box per session: whiskers p10-p90, box p25-p75, a bar at the median, dots at min and max (ms)."""
    if not rows:
        return ""
    lo = min(q[0] for _, q in rows)
    hi = max(q[-1] for _, q in rows)
    pad = (hi - lo) * 0.05 or hi * 0.05 or 1.0
    lo, hi = max(0.0, lo - pad), hi + pad
    x = lambda v: LABEL_W + (v - lo) / (hi - lo) * PLOT_W
    h = ROW_H * len(rows) + 30
    parts = [f'<svg class="plot distribution" width="{LABEL_W + PLOT_W + 20}" height="{h}" role="img" aria-label="{_e(title)}">']
    for t in _ticks(lo, hi):
        parts.append(f'<line x1="{x(t):.1f}" y1="0" x2="{x(t):.1f}" y2="{h - 20}" stroke="#e5e5e5"/>'
                     f'<text x="{x(t):.1f}" y="{h - 6}" text-anchor="middle">{_fmt(t)}</text>')
    for i, (label, q) in enumerate(rows):
        mn, p10, p25, p50, p75, p90, mx = q
        y = 5 + i * ROW_H
        mid = y + (ROW_H - 5) / 2 + 2
        colour = _colour(names, label)
        parts.append(f'<text x="{LABEL_W - 5}" y="{y + 13}" text-anchor="end">{_e(label)}</text>'
                     f'<line x1="{x(p10):.1f}" y1="{mid:.1f}" x2="{x(p90):.1f}" y2="{mid:.1f}" stroke="{colour}" stroke-width="2"/>'
                     f'<rect x="{x(p25):.1f}" y="{y + 2}" width="{max(x(p75) - x(p25), 1):.1f}" height="{ROW_H - 5}" '
                     f'fill="{colour}" fill-opacity="0.35" stroke="{colour}"/>'
                     f'<line x1="{x(p50):.1f}" y1="{y + 1}" x2="{x(p50):.1f}" y2="{y + ROW_H - 2}" stroke="#222" stroke-width="2"/>'
                     f'<circle cx="{x(mn):.1f}" cy="{mid:.1f}" r="2" fill="{colour}"/><circle cx="{x(mx):.1f}" cy="{mid:.1f}" r="2" fill="{colour}"/>')
    parts.append("</svg>")
    return f"<h3>{_e(title)}</h3>" + "".join(parts)


def _scatter(title: str, points: list[tuple[str, float, float]], x_label: str, y_label: str, names: list[str],
             x_fmt: str = "{:.1f} ms", y_fmt: str = "{:.1f}", y_pad: float = 0.5) -> str:
    """Accuracy (y) against latency (x, ms): one dot per artifact, named in the legend on the right."""
    if not points:
        return ""
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    x_lo, x_hi = 0.0, max(xs) * 1.1 or 1.0
    y_pad = max((max(ys) - min(ys)) * 0.15, y_pad)
    y_lo, y_hi = min(ys) - y_pad, max(ys) + y_pad
    left, top, bottom = 50, 10, 40
    X = lambda v: left + (v - x_lo) / (x_hi - x_lo) * PLOT_W
    Y = lambda v: top + (y_hi - v) / (y_hi - y_lo) * PLOT_H
    w, h = left + PLOT_W + 330, max(top + PLOT_H + bottom, top + 10 + len(points) * ROW_H)
    parts = [f'<svg class="plot scatter" width="{w}" height="{h}" role="img" aria-label="{_e(title)}">',
             f'<rect x="{left}" y="{top}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="#bbb"/>']
    for t in _ticks(x_lo, x_hi):
        parts.append(f'<line x1="{X(t):.1f}" y1="{top}" x2="{X(t):.1f}" y2="{top + PLOT_H}" stroke="#eee"/>'
                     f'<text x="{X(t):.1f}" y="{top + PLOT_H + 15}" text-anchor="middle">{_fmt(t)}</text>')
    for t in _ticks(y_lo, y_hi):
        parts.append(f'<line x1="{left}" y1="{Y(t):.1f}" x2="{left + PLOT_W}" y2="{Y(t):.1f}" stroke="#eee"/>'
                     f'<text x="{left - 5}" y="{Y(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    parts.append(f'<text x="{left + PLOT_W / 2}" y="{h - 5}" text-anchor="middle">{_e(x_label)}</text>'
                 f'<text x="12" y="{top + PLOT_H / 2}" text-anchor="middle" transform="rotate(-90 12 {top + PLOT_H / 2})">{_e(y_label)}</text>')
    for i, (label, px, py) in enumerate(points):
        colour = _colour(names, label)
        parts.append(f'<circle cx="{X(px):.1f}" cy="{Y(py):.1f}" r="5" fill="{colour}" fill-opacity="0.85">'
                     f'<title>{_e(label)}</title></circle>'
                     f'<circle cx="{left + PLOT_W + 15}" cy="{top + 10 + i * ROW_H}" r="5" fill="{colour}"/>'
                     f'<text x="{left + PLOT_W + 25}" y="{top + 14 + i * ROW_H}">{_e(label)} '
                     f'({_e(x_fmt.format(px))}, {_e(y_fmt.format(py))})</text>')
    parts.append("</svg>")
    return f"<h3>{_e(title)}</h3>" + "".join(parts)


def _latency_plots(report: dict) -> list[str]:
    """Per timed point, the distribution of every session's rounds; per tower, accuracy against latency at its
    largest batch (text: at the length max_latency_ms holds for)."""
    from mmcompress.checks.latency import budget_point

    arts = report["artifacts"]
    names = list(arts)
    out = []
    for t, k in latency_columns(report):
        rows = [(n, e["latency"][t][k]["quantiles_ms"]) for n, e in arts.items()
                if "quantiles_ms" in e["latency"].get(t, {}).get(k, {})]
        out.append(_distribution(f"{point_label(t, k)}: latency per round (ms; box p25-p75, whiskers p10-p90, "
                                 f"dots min and max)", rows, names))
    primary = arts["teacher"]["accuracy"].get("primary")
    if primary:
        for t, lat in arts["teacher"]["latency"].items():
            if not lat:
                continue
            key = budget_point(lat, max(v["batch"] for v in lat.values()))
            points = [(n, e["latency"][t][key]["median_ms"], e["accuracy"]["primary"]["value"]) for n, e in arts.items()
                      if key in e["latency"].get(t, {}) and e["accuracy"].get("primary")]
            out.append(_scatter(f"{primary['metric'].replace('_', ' ')} against {point_label(t, key)} latency",
                                points, f"{point_label(t, key)} median ms", primary["metric"].replace("_", " "), names))
    return out


def _budget_row(name: str, r: dict) -> str:
    value = "-" if r["value"] is None else f"{r['value'] + 0.0:.4g}"  # + 0.0: no "-0"
    if r.get("ci95"):  # latency budgets are judged on the interval (checks/gate.py)
        value += f" [{r['ci95'][0]:.4g}, {r['ci95'][1]:.4g}]"
    verdict = "undecided" if r.get("undecided") else {True: "pass", False: "fail", None: "not gated"}[r["passed"]]
    cells = [name, r["budget"], r["tower"] or "", r["batch"] or "", r.get("seq_len") or "", value, r["limit"]]
    return "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + f"<td class='{verdict}'>{verdict}</td></tr>"


def _lengths(report: dict) -> str:
    lengths = report["checks"].get("text_lengths") or []
    seconds = report["checks"].get("audio_seconds") or []
    return ("; text at " + ", ".join(f"{x['seq_len']} tokens ({x['from']})" for x in lengths) if lengths else "") + \
        ("; audio at " + ", ".join(f"{x['seconds']:g} s ({x['from']})" for x in seconds) if seconds else "")


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
        pruned = m.get("pruning", {})
        for t, d in pruned.get("towers", {}).items():
            b, a = d["before"], d["after"]
            towers += (f"{t}: {b['parameters'] / 1e6:.2f} → {a['parameters'] / 1e6:.2f} M parameters, "
                       f"{b['macs'] / 1e6:.1f} → {a['macs'] / 1e6:.1f} M MACs per sample, {b['heads']} → {a['heads']} "
                       f"heads, {b['mlp_channels']} → {a['mlp_channels']} MLP channels ({d['importance']}, "
                       f"{d['scope']}); ")
            if a.get("sparsity"):
                towers += f"2:4 sparse, {a['sparsity']['weights_zeroed']} weights zero: {a['sparsity']['note']}; "
        for c in pruned.get("latency", []):
            lo, hi = c["speedup_ci95"]
            towers += (f"ONNX Runtime latency of {c['after']} against {c['before']} (the unpruned model's graph, same "
                       f"precision, same rounds), {c['tower']} b{c['point']}: {c['speedup']:.2f}x [{lo:.2f}, {hi:.2f}]; ")
        if pruned.get("eval_pruned"):
            towers += "right after the cut, before recovery: " + ", ".join(f"{k} {v}" for k, v in pruned["eval_pruned"].items())
        out.append(f"<h3>{_e(name)} ({_e(m.get('stage'))})</h3><p>{_e(towers)}. {_e(m.get('seconds'))} s, "
                   f"{_e(m.get('precision'))} on {_e(m.get('device'))}, {_e(m.get('processes'))} process(es).</p>"
                   f"<table><tr><th>step</th><th>loss</th><th>eval</th></tr>{rows}</table>")
    return ("<h2>Models made by stages</h2>" + "".join(out)) if out else ""


def _plans(report: dict) -> str:
    """quantize: auto variants: per tower the plan chosen (method, nodes kept float) and why."""
    rows = []
    for name, e in report["artifacts"].items():
        for tower, p in (e.get("plan") or {}).items():
            c = p["chosen"]
            floats = ", ".join(n["module"] or n["node"] for n in c.get("float_nodes", [])) or "none"
            rows.append(f"<tr><td>{_e(name)}</td><td>{_e(tower)}</td><td>{_e(c.get('label', c['method']))}</td>"
                        f"<td style='text-align:left'>{_e(floats)}</td><td style='text-align:left'>{_e(p['reason'])}</td></tr>")
    if not rows:
        return ""
    plots = []
    for name, e in report["artifacts"].items():
        for tower, p in (e.get("plan") or {}).items():
            pts = [(f"{q.get('label', q['method'])} +{q['float_nodes']} float" + (" (chosen)" if q["chosen"] else ""), q["speedup"],
                    q["cosine_min"]) for q in p.get("plans", []) if q["speedup"] is not None]
            labels = [x[0] for x in pts]
            plots.append(_scatter(f"{name}, {tower}: every plan tried (min cosine on the calibration rows against "
                                  f"speedup over fp32; target {p['target_cosine']})", pts, "speedup over the fp32 graph",
                                  "min cosine", ["teacher", *labels], x_fmt="{:.2f}x", y_fmt="{:.4f}", y_pad=0.005))
            full = p.get("full_int8_cosine", {}).get("mean", 1.0)
            sens = [(r["module"], (r["leave_out_cosine"] - full) if r.get("leave_out_cosine") is not None
                     else 1 - (r["alone_cosine"] or 1.0)) for r in p.get("sensitive", [])]
            plots.append(_bars(f"{name}, {tower}: most sensitive nodes (cosine regained when kept float, or lost "
                               f"when it alone is int8)", sens, "", fmt=".4f", label_w=320))
    return ("<h2>Precision plans</h2><p>Every plan tried, with its cosine and speedup on the calibration rows, and "
            "each node's sensitivity: <code>variants/&lt;name&gt;/plan.json</code>.</p><table><tr><th>artifact</th>"
            "<th>tower</th><th>method</th><th>nodes kept float</th><th>why</th></tr>" + "".join(rows) + "</table>"
            + "".join(plots))


def render(report: dict) -> str:
    arts = report["artifacts"]
    m = report["machine"]
    primary = arts["teacher"]["accuracy"].get("primary")
    head, cells = rows(report)
    body = ["<tr>" + "".join(f"<td class='{'fail' if c in ('CRASHED', 'FAILED') else c if c in ('pass', 'fail') else ''}'>{_e(c)}</td>" for c in r) + "</tr>"
            for r in cells]
    budgets = [_budget_row(n, r) for n, e in arts.items() for r in e["budgets"]]
    charts = []
    for t, k in latency_columns(report):
        speedups = [(n, e["latency"][t][k]["speedup"]) for n, e in arts.items()
                    if "speedup" in e["latency"].get(t, {}).get(k, {})]
        charts.append(_bars(f"{point_label(t, k)}: speedup over the PyTorch teacher", speedups, "x", ref=1.0))
    deltas = [(n, e["accuracy"]["delta"]) for n, e in arts.items() if e["accuracy"].get("delta") is not None]
    charts.append(_bars(f"change in {primary['metric'] if primary else 'accuracy'} vs the teacher (points)", deltas, "", ref=0.0))
    charts += _latency_plots(report)
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
{_plans(report)}
<h2>Budgets</h2>{'<table><tr><th>artifact</th><th>budget</th><th>tower</th><th>batch</th><th>length</th><th>value</th><th>limit</th><th></th></tr>' + ''.join(budgets) + '</table>' if budgets else '<p>none set</p>'}
<h2>Charts</h2>{''.join(charts)}
</body></html>
"""
